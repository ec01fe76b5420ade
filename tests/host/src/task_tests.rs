// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause

use crate::proto::hdr::Stag;
use crate::proto::task::*;

#[test]
fn login_transition_needs_transit_and_ffp() {
    assert!(login_to_ffp(0x83)); // T, CSG 0, NSG 3
    assert!(login_to_ffp(0x87)); // T, CSG 1, NSG 3
    assert!(!login_to_ffp(0x81)); // T, NSG 1 (security -> operational)
    assert!(!login_to_ffp(0x03)); // NSG 3 without T: not a transition
    assert!(!login_to_ffp(0x00));
}

#[test]
fn itt_index_masks_the_age_and_rejects_foreign_tags() {
    assert_eq!(itt_index(5, 128), Some(5));
    assert_eq!(itt_index(5 | (3 << 28), 128), Some(5));
    assert_eq!(itt_index(127, 128), Some(127));
    assert_eq!(itt_index(128, 128), None);
    assert_eq!(itt_index(0x1fff, 128), None);
    assert_eq!(itt_index(u32::MAX, 4096), None);
}

#[test]
fn write_stag_points_past_the_unsolicited_data() {
    // 64 KiB write, 8 KiB immediate, nothing else unsolicited.
    assert_eq!(
        write_stag(0x1234, 0x10000, 8192, 0, 65536, 65536),
        Some(Stag {
            stag: 0x1234,
            va: 0x10000 + 8192
        })
    );
    // 8 KiB immediate + 24 KiB unsolicited Data-Out.
    assert_eq!(
        write_stag(7, 0x1000, 8192, 24576, 65536, 65536),
        Some(Stag {
            stag: 7,
            va: 0x1000 + 32768
        })
    );
    // All immediate: no STag at all.
    assert_eq!(write_stag(7, 0x1000, 4096, 0, 4096, 4096), None);
    assert_eq!(write_stag(7, 0x1000, 4096, 4096, 8192, 8192), None);
    // edtl beyond the buffer, buffer entirely immediate: W with zero STag/VA.
    assert_eq!(
        write_stag(7, 0x1000, 4096, 0, 4160, 4096),
        Some(Stag { stag: 0, va: 0 })
    );
    // No immediate data.
    assert_eq!(
        write_stag(9, 0xfff0, 0, 0, 512, 512),
        Some(Stag {
            stag: 9,
            va: 0xfff0
        })
    );
}

#[test]
fn write_stag_does_not_overflow() {
    assert_eq!(
        write_stag(1, u64::MAX, 0, u32::MAX, u32::MAX, u32::MAX),
        None
    );
    assert!(write_stag(1, u64::MAX, 1, 0, u32::MAX, u32::MAX).is_some());
}

#[test]
fn exposed_round_trips() {
    for e in [
        Exposed::None,
        Exposed::DmaKey,
        Exposed::Mr { idx: 0, rkey: 0 },
        Exposed::Mr {
            idx: 0,
            rkey: u32::MAX,
        },
        Exposed::Mr {
            idx: EXPOSED_MAX_MRS - 1,
            rkey: 0x1234_5678,
        },
        Exposed::Mr { idx: 127, rkey: 1 },
    ] {
        assert_eq!(Exposed::decode(e.encode()), e, "{e:?}");
    }
    assert_eq!(Exposed::None.encode(), 0);
    // Words that encode never writes read as nothing exposed.
    assert_eq!(Exposed::decode(3 << 62), Exposed::None);
    assert_eq!(Exposed::decode((1 << 62) | 5), Exposed::None);
    assert_eq!(Exposed::decode(77), Exposed::None);
}

#[test]
fn tmf_ref_round_trips_and_names_its_tasks() {
    use crate::proto::bhs::TmfScope;
    // ABORT TASK: the slot of the referenced tag, its age bits ignored; a tag outside the
    // pool (or the reserved one) releases nothing.
    assert_eq!(
        TmfRef::of(TmfScope::Task(7 | (2 << 28)), 128),
        Some(TmfRef::Task(7))
    );
    assert_eq!(TmfRef::of(TmfScope::Task(128), 128), None);
    assert_eq!(TmfRef::of(TmfScope::Task(u32::MAX), 128), None);
    assert_eq!(TmfRef::of(TmfScope::Lun(3), 128), Some(TmfRef::Lun));
    assert_eq!(TmfRef::of(TmfScope::Target, 128), Some(TmfRef::Target));
    // Every value survives the slot's word, and nothing is 0 but nothing.
    let mut words = Vec::new();
    for r in [
        None,
        Some(TmfRef::Task(0)),
        Some(TmfRef::Task(1)),
        Some(TmfRef::Task(ITT_INDEX_MASK as usize)),
        Some(TmfRef::Lun),
        Some(TmfRef::Target),
    ] {
        let w = TmfRef::encode(r);
        assert_eq!(TmfRef::decode(w), r, "{r:?} as {w:#x}");
        assert_eq!(w == 0, r.is_none(), "{r:?} as {w:#x}");
        words.push(w);
    }
    words.sort_unstable();
    words.dedup();
    assert_eq!(words.len(), 6, "two references share a word");
    // An index that would collide with the reserved words is nothing, never a reset.
    assert_eq!(TmfRef::encode(Some(TmfRef::Task(u32::MAX as usize - 1))), 0);
    assert_eq!(TmfRef::encode(Some(TmfRef::Task(u32::MAX as usize))), 0);
    // Which LUNs a request releases.
    assert!(TmfRef::Lun.covers_lun(3, 3));
    assert!(!TmfRef::Lun.covers_lun(3, 0));
    assert!(TmfRef::Target.covers_lun(3, 0));
    assert!(TmfRef::Target.covers_lun(3, 3));
    assert!(!TmfRef::Task(3).covers_lun(3, 3));
}

#[test]
fn refusal_names_the_commands_no_retry_can_send() {
    let (r, w) = (CMD_READ, CMD_WRITE);
    // Ordinary commands go out.
    assert_eq!(refusal(0x80 | r, true, 4096, 1), None);
    assert_eq!(refusal(0x80 | w, true, 65536, 16), None);
    assert_eq!(refusal(0x80, true, 0, 0), None); // no data (TEST UNIT READY)
    assert_eq!(refusal(0x80, true, 4096, 1), None); // a buffer without R/W is not ours to judge
                                                    // Both directions, whatever else.
    assert_eq!(refusal(r | w, true, 4096, 1), Some(Refusal::Bidirectional));
    assert_eq!(refusal(r | w, false, 0, 0), Some(Refusal::Bidirectional));
    // Protection information, with or without data.
    assert_eq!(refusal(r, false, 4096, 1), Some(Refusal::ProtectionInfo));
    assert_eq!(refusal(0, false, 0, 0), Some(Refusal::ProtectionInfo));
    // A direction without a buffer: no bytes, or no scatterlist entries.
    assert_eq!(refusal(r, true, 0, 1), Some(Refusal::NoBuffer));
    assert_eq!(refusal(w, true, 4096, 0), Some(Refusal::NoBuffer));
    // Each reason is its own line.
    let reasons = [
        Refusal::Bidirectional,
        Refusal::ProtectionInfo,
        Refusal::NoBuffer,
    ]
    .map(Refusal::reason);
    assert!(reasons.iter().all(|s| !s.is_empty()));
    assert!(reasons[0] != reasons[1] && reasons[1] != reasons[2] && reasons[0] != reasons[2]);
}
