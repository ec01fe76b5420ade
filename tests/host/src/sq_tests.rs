// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause

use crate::proto::sq::{RxBatch, Signal, Signals, MAX_UNSIGNALED, RX_BATCH};

#[test]
fn tracked_sends_are_always_signaled() {
    // After every possible run of unsignalled SENDs (0 ..= MAX_UNSIGNALED - 1), a tracked
    // SEND is signalled and ends the run.
    let mut s = Signals::default();
    for run in 0..MAX_UNSIGNALED {
        for _ in 0..run {
            let sig = s.next(false);
            assert_eq!(sig, Signal::Quiet);
            s.posted(sig);
        }
        assert_eq!(s.unsignaled(), run);
        for _ in 0..3 {
            let sig = s.next(true);
            assert_eq!(sig, Signal::Track);
            assert!(sig.signaled());
            s.posted(sig);
            assert_eq!(s.unsignaled(), 0);
        }
    }
}

#[test]
fn untracked_run_never_exceeds_the_limit() {
    let mut s = Signals::default();
    let mut run = 0u32;
    let mut reclaims = 0;
    for _ in 0..10 * MAX_UNSIGNALED {
        let sig = s.next(false);
        assert_ne!(sig, Signal::Track);
        s.posted(sig);
        if sig.signaled() {
            reclaims += 1;
            // Every MAX_UNSIGNALED-th SEND asks for a completion.
            assert_eq!(run, MAX_UNSIGNALED - 1);
            run = 0;
        } else {
            run += 1;
        }
        assert!(run < MAX_UNSIGNALED);
        assert_eq!(s.unsignaled(), run);
    }
    assert_eq!(reclaims, 10);
}

#[test]
fn any_signaled_send_restarts_the_run() {
    let mut s = Signals::default();
    for _ in 0..MAX_UNSIGNALED - 2 {
        let sig = s.next(false);
        s.posted(sig);
    }
    assert_eq!(s.unsignaled(), MAX_UNSIGNALED - 2);
    s.posted(s.next(true));
    assert_eq!(s.unsignaled(), 0);
    assert_eq!(s.next(false), Signal::Quiet);
}

#[test]
fn rx_batch_returns_every_buffer_once_in_order() {
    let mut b = RxBatch::default();
    let mut posted = Vec::new();
    for i in 0..10 * RX_BATCH + 3 {
        if let Some(batch) = b.push(i) {
            assert_eq!(b.len(), 0);
            posted.extend_from_slice(&batch);
        } else {
            assert!(b.len() > 0 && b.len() < RX_BATCH);
        }
    }
    assert_eq!(posted, (0..10 * RX_BATCH).collect::<Vec<_>>());
    assert_eq!(b.len(), 3);
}

#[test]
fn rx_batch_never_holds_a_full_batch() {
    let mut b = RxBatch::default();
    for i in 0..RX_BATCH - 1 {
        assert!(b.push(i).is_none());
    }
    assert_eq!(b.len(), RX_BATCH - 1);
    assert!(b.push(99).is_some());
    assert_eq!(b.len(), 0);
}
