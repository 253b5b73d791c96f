//! "Did you mean ...?": the nearest known name to a misspelt one.
//!
//! Typos in keys and names are the most common configuration mistake, and the fix is obvious
//! once the right spelling is shown. A suggestion is only made when the names are close, so a
//! hint never points somewhere unrelated.

/// How similar (0 to 1, case-insensitive) a candidate must be to be suggested.
const MIN_SIMILARITY: f64 = 0.6;

/// The candidate most similar to `wanted`, if any is reasonably close.
pub(crate) fn nearest<'a>(
    wanted: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let wanted = wanted.to_lowercase();
    let mut best: Option<(f64, &str)> = None;
    for candidate in candidates {
        let score = strsim::normalized_damerau_levenshtein(&wanted, &candidate.to_lowercase());
        if score >= MIN_SIMILARITY && best.is_none_or(|(top, _)| score > top) {
            best = Some((score, candidate));
        }
    }
    best.map(|(_, candidate)| candidate)
}

/// The hint for a misspelt name: `did you mean "Threshold"?`.
pub(crate) fn did_you_mean<'a>(
    wanted: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    nearest(wanted, candidates).map(|name| format!("did you mean \"{name}\"?"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names_only() {
        let known = [
            "Threshold",
            "Enable",
            "Metrics",
            "Analytics",
            "Period",
            "Step",
        ];
        let table = [
            ("Treshold", Some("Threshold")),
            ("THRESHOLDS", Some("Threshold")),
            ("metric", Some("Metrics")),
            ("Enabled", Some("Enable")),
            ("Image", None),
            ("x", None),
        ];
        for (wanted, expected) in table {
            assert_eq!(nearest(wanted, known), expected, "for {wanted}");
        }
    }
}
