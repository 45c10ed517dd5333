//! The run's warnings as a reader sees them. A warning that names many runs ends in a list,
//! `sentence: a · b · c`; the terminal puts the list on indented lines of its own and the
//! HTML report shows it as chips, rather than one line of several hundred characters.

/// Width the terminal's list lines are wrapped to.
const WIDTH: usize = 100;

/// A warning's sentence and the items it lists, where it ends in `sentence: a · b · c`.
pub(super) fn split_listed(warning: &str) -> Option<(&str, Vec<&str>)> {
    let first_separator = warning.find(" · ")?;
    let colon = warning[..first_separator].rfind(": ")?;
    let items = warning[colon + 2..].split(" · ").collect();
    Some((&warning[..colon], items))
}

/// Every warning as `warning: …` lines; a listing warning's items follow its sentence,
/// indented, as many to a line as fit in [`WIDTH`].
pub(super) fn render(warnings: &[String]) -> String {
    let mut out = String::new();
    for w in warnings {
        let Some((sentence, items)) = split_listed(w) else {
            out.push_str(&format!("warning: {w}\n"));
            continue;
        };
        out.push_str(&format!("warning: {sentence}:\n"));
        let mut line = String::from("   ");
        for (i, item) in items.iter().enumerate() {
            let piece = if i + 1 < items.len() {
                format!(" {item} ·")
            } else {
                format!(" {item}")
            };
            if line.len() > 3 && line.chars().count() + piece.chars().count() > WIDTH {
                out.push_str(&line);
                out.push('\n');
                line = String::from("   ");
            }
            line.push_str(&piece);
        }
        out.push_str(&line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listing_warning_is_its_sentence_and_its_items() {
        let (sentence, items) = split_listed(
            "limited 2 of 9 runs (e.g. a: b; marked #): http echo 32 B · ws echo 32 B",
        )
        .unwrap();
        assert_eq!(sentence, "limited 2 of 9 runs (e.g. a: b; marked #)");
        assert_eq!(items, ["http echo 32 B", "ws echo 32 B"]);
        assert_eq!(split_listed("push http: skipped, no server push"), None);
    }

    #[test]
    fn the_terminal_wraps_a_long_list_under_its_sentence() {
        let items: Vec<String> = (0..20).map(|i| format!("wss echo 64 KiB {i}%")).collect();
        let warnings = [
            "push http: skipped".to_owned(),
            format!("busy in 20 of 24 runs (marked !): {}", items.join(" · ")),
        ];
        let text = render(&warnings);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "warning: push http: skipped");
        assert_eq!(lines[1], "warning: busy in 20 of 24 runs (marked !):");
        assert!(lines.len() > 4, "{text}");
        for line in &lines[2..] {
            assert!(line.starts_with("    wss echo 64 KiB "), "{line:?}");
            assert!(line.chars().count() <= WIDTH, "{line:?}");
        }
        // Every item once, in order.
        let listed: Vec<&str> = lines[2..]
            .iter()
            .flat_map(|l| l.trim().trim_end_matches(" ·").split(" · "))
            .collect();
        assert_eq!(listed, items);
    }
}
