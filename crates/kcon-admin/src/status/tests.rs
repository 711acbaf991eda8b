//! The evaluator on the cases of Burrow's own evaluator tests (its `caching_test.go` table,
//! numbered as there), each rule checked on its own and then the status, plus kcon's ERR for a
//! commit below the log start and the window's own bookkeeping.

use super::*;

/// A commit at `offset` seen at `at_ms` with `lag` (`None`: unknown).
fn c(offset: i64, at_ms: i64, lag: Option<u64>) -> Commit {
    Commit { offset, at_ms, lag }
}

/// Commits at offsets `offsets`, 100 s apart from 100 s, with `lags`.
fn series(offsets: [i64; 5], lags: [u64; 5]) -> Vec<Commit> {
    offsets
        .iter()
        .zip(lags)
        .enumerate()
        .map(|(i, (&o, l))| c(o, 100_000 * (i as i64 + 1), Some(l)))
        .collect()
}

/// Fifteen commits one second apart, each with zero lag, from offset 792748079.
fn steady() -> Vec<Commit> {
    let times = [
        1512224618356,
        1512224619362,
        1512224620366,
        1512224621367,
        1512224622370,
        1512224623373,
        1512224624378,
        1512224625379,
        1512224626383,
        1512224627383,
        1512224628383,
        1512224629388,
        1512224630391,
        1512224631394,
        1512224632397,
    ];
    times
        .iter()
        .enumerate()
        .map(|(i, &t)| c(792748079 + i as i64, t, Some(0)))
        .collect()
}

struct Case {
    commits: Vec<Commit>,
    log_ends: Vec<i64>,
    lag: u64,
    /// Now, in seconds (as Burrow's table gives it).
    now_s: i64,
    allowed_lag: u64,
    lag_above_everywhere: bool,
    rewound_at: Option<usize>,
    stopped: bool,
    stalled: bool,
    lag_never_fell: bool,
    caught_up_recently: bool,
    status: Status,
}

fn cases() -> Vec<Case> {
    let rising = series([1000, 2000, 3000, 4000, 5000], [0, 50, 100, 150, 200]);
    let rising_from_50 = series([1000, 2000, 3000, 4000, 5000], [50, 100, 150, 200, 250]);
    let rewind = series([1000, 2000, 3000, 2000, 4000], [100, 150, 200, 1250, 300]);
    let stuck = series([1000; 5], [100, 150, 200, 250, 300]);
    let mut with_unknown_lags = Vec::new();
    for i in 0..10 {
        let known = i % 2 == 0;
        with_unknown_lags.push(c(
            1000 + 500 * i as i64,
            100_000 + 50_000 * i as i64,
            known.then_some(50 * (i as u64 / 2)),
        ));
    }
    vec![
        // 0: the lag was zero in the window: OK.
        Case {
            commits: rising.clone(),
            log_ends: vec![5200],
            lag: 200,
            now_s: 600,
            allowed_lag: 0,
            lag_above_everywhere: false,
            rewound_at: None,
            stopped: false,
            stalled: false,
            lag_never_fell: true,
            caught_up_recently: false,
            status: Status::Ok,
        },
        // 1: 400 s since the last commit equals the window's span, not more: not stopped.
        Case {
            commits: rising.clone(),
            log_ends: vec![5200],
            lag: 200,
            now_s: 900,
            allowed_lag: 0,
            lag_above_everywhere: false,
            rewound_at: None,
            stopped: false,
            stalled: false,
            lag_never_fell: true,
            caught_up_recently: false,
            status: Status::Ok,
        },
        // 2: 500 s since the last commit: STOP, even with zero lag at the window's start.
        Case {
            commits: rising,
            log_ends: vec![5200],
            lag: 200,
            now_s: 1000,
            allowed_lag: 0,
            lag_above_everywhere: false,
            rewound_at: None,
            stopped: true,
            stalled: false,
            lag_never_fell: true,
            caught_up_recently: false,
            status: Status::Stop,
        },
        // 3: STOP with lag everywhere too.
        Case {
            commits: rising_from_50.clone(),
            log_ends: vec![5250],
            lag: 250,
            now_s: 1000,
            allowed_lag: 0,
            lag_above_everywhere: true,
            rewound_at: None,
            stopped: true,
            stalled: false,
            lag_never_fell: true,
            caught_up_recently: false,
            status: Status::Stop,
        },
        // 4: the same offset every time, but zero lag at first: OK (stalled alone is no error).
        Case {
            commits: series([1000; 5], [0, 50, 100, 150, 200]),
            log_ends: vec![1200],
            lag: 200,
            now_s: 600,
            allowed_lag: 0,
            lag_above_everywhere: false,
            rewound_at: None,
            stopped: false,
            stalled: true,
            lag_never_fell: true,
            caught_up_recently: false,
            status: Status::Ok,
        },
        // 5: the same offset every time with lag everywhere: STALL.
        Case {
            commits: stuck.clone(),
            log_ends: vec![1300],
            lag: 300,
            now_s: 600,
            allowed_lag: 0,
            lag_above_everywhere: true,
            rewound_at: None,
            stopped: false,
            stalled: true,
            lag_never_fell: true,
            caught_up_recently: false,
            status: Status::Stall,
        },
        // 6: STALL with a lag that does not change either.
        Case {
            commits: series([1000; 5], [100; 5]),
            log_ends: vec![1100],
            lag: 100,
            now_s: 600,
            allowed_lag: 0,
            lag_above_everywhere: true,
            rewound_at: None,
            stopped: false,
            stalled: true,
            lag_never_fell: true,
            caught_up_recently: false,
            status: Status::Stall,
        },
        // 7: a rewind the consumer came back from, and the lag fell: OK.
        Case {
            commits: rewind.clone(),
            log_ends: vec![4300],
            lag: 300,
            now_s: 600,
            allowed_lag: 0,
            lag_above_everywhere: true,
            rewound_at: Some(3),
            stopped: false,
            stalled: false,
            lag_never_fell: false,
            caught_up_recently: false,
            status: Status::Ok,
        },
        // 8: no lag now: OK whatever the window says.
        Case {
            commits: rising_from_50,
            log_ends: vec![5250],
            lag: 0,
            now_s: 1000,
            allowed_lag: 0,
            lag_above_everywhere: true,
            rewound_at: None,
            stopped: true,
            stalled: false,
            lag_never_fell: true,
            caught_up_recently: false,
            status: Status::Ok,
        },
        // 9: commits stopped while new records came: STOP although the window had no lag.
        Case {
            commits: steady(),
            log_ends: vec![792749024, 792749000, 792748800, 792748600, 792748500],
            lag: 931,
            now_s: 1512224650,
            allowed_lag: 0,
            lag_above_everywhere: false,
            rewound_at: None,
            stopped: true,
            stalled: false,
            lag_never_fell: true,
            caught_up_recently: false,
            status: Status::Stop,
        },
        // 10: as 9, but a recent log end was at the last commit: caught up a moment ago, OK.
        Case {
            commits: steady(),
            log_ends: vec![792748094, 792748093, 792748093, 792748093],
            lag: 1,
            now_s: 1512224650,
            allowed_lag: 0,
            lag_above_everywhere: false,
            rewound_at: None,
            stopped: true,
            stalled: false,
            lag_never_fell: true,
            caught_up_recently: true,
            status: Status::Ok,
        },
        // 11: as 0 with commits of unknown lag in between: they change nothing.
        Case {
            commits: with_unknown_lags,
            log_ends: vec![5700],
            lag: 200,
            now_s: 600,
            allowed_lag: 0,
            lag_above_everywhere: false,
            rewound_at: None,
            stopped: false,
            stalled: false,
            lag_never_fell: true,
            caught_up_recently: false,
            status: Status::Ok,
        },
        // 12: lag and stopped commits, but within the allowed lag: OK.
        Case {
            commits: vec![
                c(1000, 100_000, Some(2)),
                c(2000, 200_000, Some(1)),
                c(2000, 300_000, Some(1)),
            ],
            log_ends: vec![2001],
            lag: 1,
            now_s: 550,
            allowed_lag: 1,
            lag_above_everywhere: false,
            rewound_at: None,
            stopped: true,
            stalled: false,
            lag_never_fell: false,
            caught_up_recently: false,
            status: Status::Ok,
        },
        // 13: as 5 with an allowed lag below every lag seen: still STALL.
        Case {
            commits: stuck,
            log_ends: vec![1300],
            lag: 300,
            now_s: 600,
            allowed_lag: 99,
            lag_above_everywhere: true,
            rewound_at: None,
            stopped: false,
            stalled: true,
            lag_never_fell: true,
            caught_up_recently: false,
            status: Status::Stall,
        },
        // 14: as 7 with an allowed lag: OK.
        Case {
            commits: rewind,
            log_ends: vec![4300],
            lag: 300,
            now_s: 600,
            allowed_lag: 99,
            lag_above_everywhere: true,
            rewound_at: Some(3),
            stopped: false,
            stalled: false,
            lag_never_fell: false,
            caught_up_recently: false,
            status: Status::Ok,
        },
        // 15: a rewind not caught up: REWIND.
        Case {
            commits: series([1000, 2000, 3000, 2000, 2500], [100, 150, 200, 1250, 300]),
            log_ends: vec![4300],
            lag: 300,
            now_s: 600,
            allowed_lag: 0,
            lag_above_everywhere: true,
            rewound_at: Some(3),
            stopped: false,
            stalled: false,
            lag_never_fell: false,
            caught_up_recently: false,
            status: Status::Rewind,
        },
    ]
}

#[test]
fn each_rule_and_the_status_on_burrows_cases() {
    for (i, case) in cases().iter().enumerate() {
        let now_ms = case.now_s * 1000;
        assert_eq!(
            lag_above_everywhere(&case.commits, case.allowed_lag),
            case.lag_above_everywhere,
            "case {i}: lag above everywhere"
        );
        assert_eq!(
            rewound_at(&case.commits),
            case.rewound_at,
            "case {i}: rewind"
        );
        assert_eq!(
            stopped(&case.commits, now_ms),
            case.stopped,
            "case {i}: stopped"
        );
        assert_eq!(stalled(&case.commits), case.stalled, "case {i}: stalled");
        assert_eq!(
            lag_never_fell(&case.commits),
            case.lag_never_fell,
            "case {i}: lag never fell"
        );
        assert_eq!(
            caught_up_recently(&case.commits, &case.log_ends),
            case.caught_up_recently,
            "case {i}: caught up recently"
        );
        let status = Evaluation {
            commits: &case.commits,
            log_ends: &case.log_ends,
            lag: case.lag,
            allowed_lag: case.allowed_lag,
            now_ms,
            log_start: None,
            log_end: None,
        }
        .status();
        assert_eq!(status, case.status, "case {i}: status");
    }
}

#[test]
fn a_commit_below_the_log_start_is_err_and_makes_the_group_err() {
    let commits = series([1000, 2000, 3000, 4000, 5000], [0, 50, 100, 150, 200]);
    let e = Evaluation {
        commits: &commits,
        log_ends: &[5200],
        lag: 200,
        allowed_lag: 0,
        now_ms: 600_000,
        log_start: Some(5001),
        log_end: Some(5200),
    };
    assert_eq!(e.status(), Status::Err);
    // At the log start exactly, nothing was lost.
    assert_eq!(
        Evaluation {
            log_start: Some(5000),
            ..e
        }
        .status(),
        Status::Ok
    );
    assert_eq!(group_status([Status::Ok, Status::Warn]), Status::Warn);
    for bad in [
        Status::Stop,
        Status::Stall,
        Status::Rewind,
        Status::Err,
        Status::PastEnd,
    ] {
        assert_eq!(
            group_status([Status::Ok, bad, Status::Warn]),
            Status::Err,
            "{bad}"
        );
    }
    assert_eq!(group_status([]), Status::Ok);
}

#[test]
fn a_window_keeps_its_last_commits_and_log_ends() {
    let mut w = Window::new(3);
    assert_eq!(w.status(10, 0, 0, None, None), Status::Ok, "no history: OK");
    w.commit(c(900, 50_000, Some(10)));
    assert_eq!(
        w.status(10, 0, 10_000_000, None, None),
        Status::Ok,
        "one commit spans no time: not stopped however long ago"
    );
    assert_eq!(
        w.status(10, 0, 0, Some(901), None),
        Status::Err,
        "below the log start"
    );
    for i in 0..5 {
        w.commit(c(1000, 100_000 * (i + 1), Some(100 + 50 * i as u64)));
        w.log_end(1100 + 50 * i);
    }
    assert_eq!(
        w.commits().iter().map(|c| c.at_ms).collect::<Vec<_>>(),
        [300_000, 400_000, 500_000]
    );
    // The same offset three times with lag everywhere: STALL; later, with no commit for
    // longer than the window spans (200 s): STOP.
    assert_eq!(w.status(300, 0, 600_000, None, None), Status::Stall);
    assert_eq!(w.status(300, 0, 701_000, None, None), Status::Stop);
    assert_eq!(
        Window::new(0).capacity,
        2,
        "a window holds two commits at least"
    );
}

/// A last commit past the log's end is PAST_END, whatever the window says; at the end
/// exactly it is caught up.
#[test]
fn a_commit_past_the_log_end_is_past_end_and_makes_the_group_err() {
    let commits = series([1000, 2000, 3000, 4000, 5300], [0, 50, 100, 150, 0]);
    let e = Evaluation {
        commits: &commits,
        log_ends: &[5200],
        lag: 0,
        allowed_lag: 0,
        now_ms: 600_000,
        log_start: Some(0),
        log_end: Some(5200),
    };
    assert_eq!(e.status(), Status::PastEnd);
    assert_eq!(
        (Status::PastEnd.name(), Status::PastEnd.code()),
        ("PAST_END", 6)
    );
    assert_eq!(
        Evaluation {
            log_end: Some(5300),
            ..e
        }
        .status(),
        Status::Ok
    );
    assert_eq!(group_status([Status::Ok, Status::PastEnd]), Status::Err);
    let mut w = Window::new(3);
    w.commit(c(900, 50_000, Some(0)));
    assert_eq!(w.status(0, 0, 60_000, Some(0), Some(700)), Status::PastEnd);
    assert_eq!(w.status(0, 0, 60_000, Some(0), Some(900)), Status::Ok);
}
