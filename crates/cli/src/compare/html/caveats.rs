//! The run's caveats: its warnings as a section of the report.

use std::fmt::Write as _;

use super::esc;
use crate::compare::warnings::split_listed;

/// The run's warnings, after the findings they qualify rather than above them: a contended
/// two-core run has several, each naming a dozen runs, and they pushed the findings off the
/// first screen. A warning that ends in a ` · `-separated list of runs shows the list as
/// chips under its sentence.
pub(super) fn caveats(warnings: &[String]) -> String {
    if warnings.is_empty() {
        return String::new();
    }
    let mut out = format!(
        "<section id=caveats><h2>What limits these figures ({})</h2><ul>",
        warnings.len()
    );
    for w in warnings {
        match split_listed(w) {
            Some((sentence, items)) => {
                let _ = write!(out, "<li class=warn>⚠ {}:<span class=items>", esc(sentence));
                for item in items {
                    let _ = write!(out, "<span>{}</span>", esc(item));
                }
                out.push_str("</span></li>");
            }
            None => {
                let _ = write!(out, "<li class=warn>⚠ {}</li>", esc(w));
            }
        }
    }
    out.push_str("</ul></section>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_warning_that_lists_runs_shows_them_as_chips() {
        let html = caveats(&[
            "push http: skipped".to_owned(),
            "busy in 2 of 9 runs: http <a> 98% · ws 90%".to_owned(),
        ]);
        assert!(html.contains("What limits these figures (2)"), "{html}");
        assert!(
            html.contains("<li class=warn>⚠ push http: skipped</li>"),
            "{html}"
        );
        assert!(
            html.contains("<span>http &lt;a&gt; 98%</span><span>ws 90%</span>"),
            "{html}"
        );
        assert_eq!(caveats(&[]), "");
    }
}
