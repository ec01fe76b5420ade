// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause

use crate::proto::stats::*;
use std::sync::atomic::Ordering::Relaxed;

#[test]
fn buckets_are_log2_microseconds() {
    assert_eq!(bucket(0), 0);
    assert_eq!(bucket(999), 0);
    assert_eq!(bucket(1_000), 1); // [1, 2) us
    assert_eq!(bucket(1_999), 1);
    assert_eq!(bucket(2_000), 2); // [2, 4)
    assert_eq!(bucket(3_999), 2);
    assert_eq!(bucket(4_000), 3);
    assert_eq!(bucket(150_000), 8); // 150 us in [128, 256)
    assert_eq!(bucket_floor_us(8), 128);
    assert_eq!(bucket(1_048_576_000), 21); // [2^20, 2^21) us: about a second
    assert_eq!(bucket(16_777_215_000), LAT_BUCKETS - 2);
    assert_eq!(bucket(16_777_216_000), LAT_BUCKETS - 1);
    assert_eq!(bucket(u64::MAX), LAT_BUCKETS - 1);
    // Every bucket's floor falls in that bucket.
    for i in 0..LAT_BUCKETS {
        assert_eq!(bucket(bucket_floor_us(i) * 1000), i, "bucket {i}");
    }
}

#[test]
fn percentiles() {
    let mut s = [0u64; LAT_BUCKETS];
    assert_eq!(percentile_bucket(&s, 50), None);
    s[3] = 98;
    s[10] = 2;
    assert_eq!(percentile_bucket(&s, 50), Some(3));
    assert_eq!(percentile_bucket(&s, 98), Some(3));
    assert_eq!(percentile_bucket(&s, 99), Some(10));
    assert_eq!(percentile_bucket(&s, 100), Some(10));
    let mut one = [0u64; LAT_BUCKETS];
    one[5] = 1;
    assert_eq!(percentile_bucket(&one, 1), Some(5));
    assert_eq!(percentile_bucket(&one, 99), Some(5));
}

fn value(text: &str, key: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("no {key} in\n{text}"))
        .to_string()
}

#[test]
fn stats_file_format() {
    let st = Stats::default();
    Stats::inc(&st.c.cmds_read);
    Stats::add(&st.c.bytes_read, 4096);
    st.lat.record(150_000);
    st.lat.record(170_000);
    st.lat.record(3_000_000);
    let mut out = String::new();
    st.write(&mut out).unwrap();
    assert_eq!(value(&out, "cmds_read"), "1");
    assert_eq!(value(&out, "bytes_read"), "4096");
    assert_eq!(value(&out, "cmds_write"), "0");
    assert_eq!(value(&out, "latency_count"), "3");
    assert_eq!(value(&out, "latency_mean_us"), "1106");
    assert_eq!(value(&out, "latency_us 128 256"), "2");
    assert_eq!(value(&out, "latency_us 2048 4096"), "1");
    assert_eq!(value(&out, "latency_p50_us_below"), "256");
    assert_eq!(value(&out, "latency_p99_us_below"), "4096");
    // Every counter appears exactly once, in NAMES order.
    let names: Vec<&str> = out
        .lines()
        .take(Counters::NAMES.len())
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    assert_eq!(names, Counters::NAMES);
    let buckets = out.lines().filter(|l| l.starts_with("latency_us ")).count();
    assert_eq!(buckets, LAT_BUCKETS);
    assert!(out.contains("latency_us 16777216 inf 0\n"));
}

#[test]
fn empty_histogram() {
    let st = Stats::default();
    let mut out = String::new();
    st.write(&mut out).unwrap();
    assert_eq!(value(&out, "latency_count"), "0");
    assert_eq!(value(&out, "latency_mean_us"), "0");
    assert_eq!(value(&out, "latency_p99_us_below"), "-");
    assert!(out.contains("latency_p50_us_below -\n"));
    // Counters are independent of the histogram: bumping one changes only its own line.
    Stats::inc(&st.c.err_post);
    Stats::add(&st.c.err_post, 2);
    assert_eq!(st.c.err_post.load(Relaxed), 3);
    let mut after = String::new();
    st.write(&mut after).unwrap();
    assert_eq!(value(&after, "err_post"), "3");
    assert_eq!(value(&after, "latency_count"), "0");
    let changed: Vec<_> = out
        .lines()
        .zip(after.lines())
        .filter(|(a, b)| a != b)
        .collect();
    assert_eq!(changed, [("err_post 0", "err_post 3")]);
}

#[test]
fn counters_add_into_a_total() {
    static TOTAL: Counters = Counters::new();
    let out = |c: &Counters| {
        let mut s = String::new();
        c.write(&mut s).unwrap();
        s
    };
    // Starts at zero, every counter.
    let t0 = out(&TOTAL);
    assert_eq!(t0.lines().count(), Counters::NAMES.len());
    assert!(t0.lines().all(|l| l.ends_with(" 0")), "{t0}");
    let a = Counters::default();
    a.err_protocol.store(2, Relaxed);
    a.cmds_read.store(5, Relaxed);
    let b = Counters::default();
    b.err_protocol.store(1, Relaxed);
    b.tmf_held.store(7, Relaxed);
    a.add_to(&TOTAL);
    b.add_to(&TOTAL);
    let t = out(&TOTAL);
    assert_eq!(value(&t, "err_protocol"), "3");
    assert_eq!(value(&t, "cmds_read"), "5");
    assert_eq!(value(&t, "tmf_held"), "7");
    assert_eq!(value(&t, "cmds_write"), "0");
    // The sources are left as they were.
    assert_eq!(value(&out(&a), "err_protocol"), "2");
    assert_eq!(value(&out(&b), "tmf_held"), "7");
}
