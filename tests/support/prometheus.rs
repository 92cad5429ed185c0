//! Reading the Prometheus text exposition in tests.

/// The value of `series` (the full series name with labels, as Prometheus prints it) in
/// a `/metrics` text; 0 when absent.
pub fn metric_value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| {
            line.strip_prefix(series)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0.0)
}
