use super::*;

use std::sync::atomic::{AtomicU32, Ordering};

const GOOD: &str = r#"
[[plan]]
name = "firearms"
incident_type = "firearms"
grade = "immediate"

[[plan.group]]
agency = "POLICE"
unit_types = ["arv"]
capabilities = ["firearms"]
count = 2
arrive_together = true

[[plan.group]]
agency = "police"
unit_types = ["irv"]
count = 1

[[plan]]
name = "burglary_night"
incident_type = "burglary"
time = "22:00-06:00"
group = [{ agency = "POLICE", count = 1 }]
"#;

fn with_rules<R>(f: impl FnOnce(Rules<'_>) -> R) -> R {
    let vocab = Vocabulary::default();
    let config = RankConfig::default();
    f(Rules { vocab: &vocab, config: &config })
}

/// A fresh directory of files for one test.
fn dir(files: &[(&str, &str)]) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let d = std::env::temp_dir().join(format!("planfile-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed)));
    std::fs::create_dir_all(&d).unwrap();
    for (name, text) in files {
        std::fs::write(d.join(name), text).unwrap();
    }
    d
}

fn problems(text: &str) -> Vec<Problem> {
    let d = dir(&[("plans.toml", text)]);
    with_rules(|r| load(&d.join("plans.toml"), r)).expect_err("should be refused")
}

/// (line, key) of each problem.
fn places(text: &str) -> Vec<(usize, String)> {
    problems(text).into_iter().map(|p| (p.line, p.key)).collect()
}

#[test]
fn a_good_file_gives_its_plans_with_their_lines() {
    let parsed = with_rules(|r| parse(GOOD, "plans.toml", r));
    assert!(parsed.problems.is_empty(), "{:?}", parsed.problems);
    let (firearms, line) = &parsed.plans[0];
    assert_eq!(*line, 2);
    assert_eq!(firearms.grade, Some(Grade::Immediate));
    assert_eq!(firearms.groups.len(), 2);
    assert!(firearms.groups[0].arrive_together && !firearms.groups[1].arrive_together);
    assert_eq!(firearms.groups[0].unit_types, ["arv"]);
    let (night, line) = &parsed.plans[1];
    assert_eq!(*line, 19);
    assert_eq!(night.window, Some(TimeWindow { start_minute: 1320, end_minute: 360 }));
}

#[test]
fn unknown_names_are_refused_with_line_and_key() {
    let text = GOOD
        .replace(r#"capabilities = ["firearms"]"#, r#"capabilities = ["tazer"]"#)
        .replace(r#"unit_types = ["irv"]"#, r#"unit_types = ["pump"]"#)
        .replace(r#"agency = "police""#, r#"agency = "polise""#);
    assert_eq!(
        places(&text),
        [(10, "plan[0].group[0].capabilities[0]".to_owned()), (15, "plan[0].group[1].agency".to_owned()),]
    );
    // With the agency right, the fire type under police is named.
    let text = GOOD.replace(r#"unit_types = ["irv"]"#, r#"unit_types = ["pump"]"#);
    let p = problems(&text);
    assert_eq!((p[0].line, p[0].key.as_str()), (16, "plan[0].group[1].unit_types[0]"));
    assert!(p[0].message.contains("\"pump\" is not a POLICE unit type"), "{}", p[0]);
    assert!(p[0].to_string().starts_with(&format!("{}:16: plan[0].group[1].unit_types[0]: ", p[0].file)));
}

#[test]
fn counts_outside_the_limit_are_refused() {
    for bad in ["0", "51", "-1", "\"two\""] {
        let text = GOOD.replace("count = 2", &format!("count = {bad}"));
        assert_eq!(places(&text), [(11, "plan[0].group[0].count".to_owned())], "count = {bad}");
    }
}

#[test]
fn duplicate_keys_are_refused_by_line() {
    let text = GOOD.replace("count = 2\n", "count = 2\ncount = 3\n");
    let p = problems(&text);
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].line, 12, "{}", p[0]);
    assert!(p[0].message.contains("not valid TOML"), "{}", p[0]);
}

#[test]
fn unknown_keys_and_missing_keys_are_named() {
    let text = GOOD.replace("grade = \"immediate\"", "grade = \"immediate\"\npriority = 1");
    assert_eq!(places(&text), [(6, "plan[0].priority".to_owned())]);
    let text = GOOD.replace("incident_type = \"firearms\"\n", "");
    assert_eq!(places(&text), [(2, "plan[0].incident_type".to_owned())]);
    let text = GOOD.replace("time = \"22:00-06:00\"", "time = \"22:00-22:00\"");
    assert_eq!(places(&text), [(22, "plan[1].time".to_owned())]);
}

#[test]
fn equally_specific_overlapping_plans_are_refused_naming_both() {
    let text = format!(
        "{GOOD}\n[[plan]]\nname = \"burglary_late\"\nincident_type = \"burglary\"\ntime = \"05:00-07:00\"\n\
         [[plan.group]]\nagency = \"POLICE\"\ncount = 2\n"
    );
    let p = problems(&text);
    assert_eq!(p.len(), 1);
    assert_eq!((p[0].line, p[0].key.as_str()), (25, "plan[2] (\"burglary_late\")"));
    assert!(p[0].message.contains("plans.toml:19"), "{}", p[0]);
    // A duplicate name is named too.
    let text = format!("{GOOD}\n[[plan]]\nname = \"firearms\"\nincident_type = \"other\"\ngroup = [{{ agency = \"FIRE\", count = 1 }}]\n");
    assert_eq!(places(&text), [(25, "plan[2].name".to_owned())]);
}

#[test]
fn includes_are_read_relative_to_their_file_once() {
    let d = dir(&[("main.toml", "include = [\"sub/a.toml\", \"sub/b.toml\"]\n")]);
    std::fs::create_dir_all(d.join("sub")).unwrap();
    std::fs::write(d.join("sub/a.toml"), GOOD).unwrap();
    std::fs::write(d.join("sub/b.toml"), "include = [\"a.toml\"]\n").unwrap();
    let f = with_rules(|r| load(&d.join("main.toml"), r)).unwrap();
    assert_eq!(f.plans.len(), 2);
    assert_eq!(f.files.len(), 3);
    assert!(f.origins[0].file.ends_with("a.toml") && f.origins[0].line == 2);
}

#[test]
fn an_include_cycle_is_refused_at_the_include_that_closes_it() {
    let d = dir(&[("a.toml", "include = [\"b.toml\"]\n"), ("b.toml", "\n\ninclude = [\"a.toml\"]\n")]);
    let p = with_rules(|r| load(&d.join("a.toml"), r)).unwrap_err();
    assert_eq!(p.len(), 1);
    assert!(p[0].file.ends_with("b.toml") && p[0].line == 3 && p[0].key == "include", "{}", p[0]);
    assert!(p[0].message.contains("include cycle"), "{}", p[0]);
}

#[test]
fn a_missing_file_is_named() {
    let d = dir(&[("a.toml", "include = [\"nope.toml\"]\n")]);
    let p = with_rules(|r| load(&d.join("a.toml"), r)).unwrap_err();
    assert!(p[0].line == 1 && p[0].message.contains("nope.toml: cannot be read"), "{}", p[0]);
    let p = with_rules(|r| load(&d.join("absent.toml"), r)).unwrap_err();
    assert!(p[0].line == 0 && p[0].file.ends_with("absent.toml"), "{}", p[0]);
}

#[test]
fn windows_parse_strictly() {
    assert_eq!(window("06:00-22:00"), Some(TimeWindow { start_minute: 360, end_minute: 1320 }));
    for bad in ["6:00-22:00", "06:00-24:00", "06:00", "06:60-07:00", "07:00-07:00", "ab:cd-ef:gh"] {
        assert_eq!(window(bad), None, "{bad}");
    }
}
