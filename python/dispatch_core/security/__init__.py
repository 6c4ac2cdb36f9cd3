"""Who may call what: transport security (`tls.py`), the caller's identity (`auth.py`),
the policy mapping principals to roles and roles to RPCs (`policy.py`), and development
certificates (`certs.py`). README, "Security"."""
