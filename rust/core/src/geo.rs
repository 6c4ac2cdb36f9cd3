//! Great-circle geometry on a spherical Earth.
//!
//! Distances are haversine great-circle metres. The grid search prunes with chord lengths
//! between unit vectors (three multiplications, no trigonometry), which are monotone in the
//! great-circle distance, so pruning never changes which units are ranked.

use crate::error::{CoreError, CoreResult};

/// Mean Earth radius (IUGG), metres.
pub const EARTH_RADIUS_M: f64 = 6_371_008.8;

/// Checks a WGS84 coordinate; `prefix` names the fields in the error (e.g. `"lat"`).
pub fn validate(lat: f64, lon: f64) -> CoreResult<()> {
    if !lat.is_finite() || !(-90.0..=90.0).contains(&lat) {
        return Err(CoreError::invalid("lat", format!("{lat} is not a latitude in [-90, 90]")));
    }
    if !lon.is_finite() || !(-180.0..=180.0).contains(&lon) {
        return Err(CoreError::invalid("lon", format!("{lon} is not a longitude in [-180, 180]")));
    }
    Ok(())
}

/// True when the coordinate would pass [`validate`].
#[inline]
pub fn is_valid(lat: f64, lon: f64) -> bool {
    lat.is_finite() && lon.is_finite() && (-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon)
}

/// Great-circle distance in metres (haversine).
#[inline]
pub fn haversine_m(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let dp = p2 - p1;
    let dl = (lon2 - lon1).to_radians();
    let h = (dp * 0.5).sin().powi(2) + p1.cos() * p2.cos() * (dl * 0.5).sin().powi(2);
    2.0 * EARTH_RADIUS_M * h.min(1.0).sqrt().asin()
}

/// The point as a unit vector in Earth-centred coordinates.
#[inline]
pub fn unit_vector(lat: f64, lon: f64) -> [f64; 3] {
    let (sp, cp) = lat.to_radians().sin_cos();
    let (sl, cl) = lon.to_radians().sin_cos();
    [cp * cl, cp * sl, sp]
}

/// Squared chord length between two unit vectors.
#[inline]
pub fn chord2(a: &[f64; 3], b: &[f64; 3]) -> f64 {
    let (dx, dy, dz) = (a[0] - b[0], a[1] - b[1], a[2] - b[2]);
    dx * dx + dy * dy + dz * dz
}

/// The squared chord of a great-circle distance; infinite when every chord is shorter.
#[inline]
pub fn chord2_of_distance(distance_m: f64) -> f64 {
    let half_angle = distance_m / (2.0 * EARTH_RADIUS_M);
    if half_angle >= std::f64::consts::FRAC_PI_2 {
        return f64::INFINITY;
    }
    let chord = 2.0 * half_angle.max(0.0).sin();
    chord * chord
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn london_to_paris_is_about_344_km() {
        let d = haversine_m(51.5074, -0.1278, 48.8566, 2.3522);
        assert!((d - 343_900.0).abs() < 1_000.0, "{d}");
    }

    #[test]
    fn chord_is_monotone_in_distance() {
        let a = unit_vector(51.5, -0.1);
        let near = unit_vector(51.51, -0.1);
        let far = unit_vector(51.6, -0.1);
        assert!(chord2(&a, &near) < chord2(&a, &far));
        let d = haversine_m(51.5, -0.1, 51.6, -0.1);
        assert!((chord2(&a, &far) - chord2_of_distance(d)).abs() < 1e-15);
    }

    #[test]
    fn validation_names_the_field() {
        assert!(matches!(validate(f64::NAN, 0.0), Err(CoreError::InvalidArgument { field, .. }) if field == "lat"));
        assert!(matches!(validate(0.0, 180.5), Err(CoreError::InvalidArgument { field, .. }) if field == "lon"));
        assert!(validate(-90.0, 180.0).is_ok());
    }
}
