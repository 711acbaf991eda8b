//! Which known name a name nobody knows was meant to be: the `(did you mean ...?)` of an
//! unknown property, and of anything else named from a known list (a group config the broker
//! refused).
//!
//! A name is close to a known one when they differ only in case and in the separators `.`, `_`
//! and `-` (`AUTO_OFFSET_RESET`, `auto-offset-reset`), or, so compared, by at most two edits
//! (a character left out, added, replaced, or two neighbours swapped: `auto.offset.rest`,
//! `auto.offest.reset`); by one edit for names of four to seven characters, and by none below
//! four, where any two names are a few edits apart. Nothing farther is suggested: a name that
//! is close to none gets no suggestion rather than a random one.

/// The known name `name` is closest to, if one is close enough (see the module); the first of
/// the closest in `known`'s order when several are as close.
pub fn closest<'a>(name: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let typed = normalized(name);
    let mut best: Option<(usize, &'a str)> = None;
    for candidate in known {
        let other = normalized(candidate);
        let limit = edits_allowed(typed.len().min(other.len()));
        if typed.len().abs_diff(other.len()) > limit {
            continue;
        }
        let d = distance(&typed, &other);
        if d <= limit && best.is_none_or(|(b, _)| d < b) {
            best = Some((d, candidate));
        }
    }
    best.map(|(_, candidate)| candidate)
}

/// How many edits two names of which the shorter has `len` characters may differ by.
fn edits_allowed(len: usize) -> usize {
    match len {
        0..=3 => 0,
        4..=7 => 1,
        _ => 2,
    }
}

/// `name` in lower case, with `_` and `-` as `.`.
fn normalized(name: &str) -> Vec<char> {
    name.chars()
        .map(|c| match c {
            '_' | '-' => '.',
            c => c.to_ascii_lowercase(),
        })
        .collect()
}

/// The edits from `a` to `b`: characters deleted, inserted or replaced, and two neighbours
/// swapped (the optimal string alignment distance).
fn distance(a: &[char], b: &[char]) -> usize {
    // Three rows of the table: two back, the last, and the one being filled.
    let mut before: Vec<usize> = vec![0; b.len() + 1];
    let mut last: Vec<usize> = (0..=b.len()).collect();
    let mut row: Vec<usize> = vec![0; b.len() + 1];
    for i in 1..=a.len() {
        row[0] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut d = (last[j] + 1).min(row[j - 1] + 1).min(last[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d = d.min(before[j - 2] + 1);
            }
            row[j] = d;
        }
        std::mem::swap(&mut before, &mut last);
        std::mem::swap(&mut last, &mut row);
    }
    last[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    const KNOWN: &[&str] = &[
        "auto.offset.reset",
        "auto.commit.interval.ms",
        "enable.auto.commit",
        "group.id",
        "acks",
        "linger.ms",
        "client.id",
    ];

    fn suggest(name: &str) -> Option<&'static str> {
        closest(name, KNOWN.iter().copied())
    }

    #[test]
    fn a_typo_is_one_edit_or_two() {
        assert_eq!(suggest("auto.offset.rest"), Some("auto.offset.reset"));
        assert_eq!(suggest("auto.ofset.rest"), Some("auto.offset.reset"));
        assert_eq!(suggest("auto.offset.resett"), Some("auto.offset.reset"));
        assert_eq!(suggest("group.idd"), Some("group.id"));
        assert_eq!(suggest("ack"), None, "three characters: no edit allowed");
        assert_eq!(suggest("acsk"), Some("acks"));
        assert_eq!(suggest("lingr.ms"), Some("linger.ms"));
    }

    #[test]
    fn two_neighbours_swapped_are_one_edit() {
        assert_eq!(suggest("auto.offest.reset"), Some("auto.offset.reset"));
        assert_eq!(suggest("enable.atuo.commti"), Some("enable.auto.commit"));
        assert_eq!(distance(&normalized("ab"), &normalized("ba")), 1);
        assert_eq!(distance(&normalized("abc"), &normalized("ca")), 3);
    }

    #[test]
    fn case_and_separators_are_no_difference() {
        assert_eq!(suggest("AUTO_OFFSET_RESET"), Some("auto.offset.reset"));
        assert_eq!(suggest("auto-offset-reset"), Some("auto.offset.reset"));
        assert_eq!(suggest("Group.Id"), Some("group.id"));
        assert_eq!(suggest("ACKS"), Some("acks"));
        // Case, separators and a typo together.
        assert_eq!(suggest("Auto_Offset_Rest"), Some("auto.offset.reset"));
    }

    #[test]
    fn nothing_close_is_no_suggestion() {
        for far in [
            "bootstrap.servers",
            "fetch.min.bytes",
            "offset.reset",
            "auto.reset",
            "x",
            "",
            "acksss",
            "group.instance.id",
            "linger",
        ] {
            assert_eq!(suggest(far), None, "{far}");
        }
        assert_eq!(closest("auto.offset.rest", []), None);
    }

    #[test]
    fn the_closest_wins_and_the_first_of_equals() {
        let known = ["client.ids", "client.id"];
        assert_eq!(closest("client.id.", known), Some("client.ids"));
        assert_eq!(closest("client.i", known), Some("client.id"));
        assert_eq!(closest("client.idx", known), Some("client.ids"));
    }
}
