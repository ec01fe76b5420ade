// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause

//! Memory registration: a command's buffer exposed to the target (the DMA key for one
//! contiguous range, else a fast registration from the connection's MR pool; iser-spec.md
//! 5.1), the keys each MR leaves valid, the check of a Send with Invalidate against them, and
//! the local invalidation of a registration the target did not invalidate (a response
//! without Send with Invalidate, the tasks a task management answer releases, a task that
//! ended without its response).
//!
//! Locks and contexts: `register` runs in `xmit_task` under `dp` with `res` held (the pool's
//! free list); releases run under `res` alone (`cleanup_task`, teardown); invalidations run
//! in the completion handler or `cleanup_task` under `rx`. The key words
//! ([`Shared::valid_key`]) change by one swap or compare-exchange each, so a key is
//! invalidated once whichever side gets there first.

use super::*;

/// How one direction of a command's buffer is exposed to the target: what its release
/// needs, kept in the task's slot until then.
pub(super) struct DirRes {
    pub(super) sg: MappedSg,
    /// Index of the registration MR, or `None` for the DMA-key path.
    pub(super) fr: Option<usize>,
}

impl DirRes {
    /// Releases this direction's mapping, and puts its MR back in `fr_free`. The MR was
    /// invalidated before the task's response was delivered (remotely or by `on_rx`); only a
    /// task that ended without a response (abort, cleanup) leaves it valid until its reuse
    /// chains a LOCAL_INV (lazy invalidation, iser-spec.md 5.4).
    pub(super) fn release(self, fr_free: &mut FreeList) {
        if let Some(i) = self.fr {
            fr_free.push(i);
        }
        self.sg.unmap();
    }
}

/// What a command's headers and SGEs use of a new [`DirRes`] (not kept).
pub(super) struct Exposure {
    /// Local key and address of the buffer (the MR's, or the DMA key and the first entry's).
    pub(super) lkey: u32,
    pub(super) iova: u64,
    /// The MR's new rkey (`None` on the DMA-key path).
    pub(super) rkey: Option<u32>,
    /// The MR's previous rkey, to invalidate before the registration.
    pub(super) inval: Option<u32>,
}

/// The task slots' buffer mappings and the registration pool's free list, under `res`: what
/// `cleanup_task` releases, so that it never waits for `dp`, which `xmit_task` holds across
/// the provider's `post_send`.
pub(super) struct Res {
    pub(super) sh: Arc<Shared>,
    /// Per task slot: [read, write].
    pub(super) dirs: KVVec<[Option<DirRes>; 2]>,
    /// Free registration MRs (indices into `Bound::fr`).
    pub(super) fr_free: FreeList,
}

/// Marks a [`Shared::valid_key`] word as holding a key (an rkey may be 0).
const VALID_KEY: u64 = 1 << 32;

/// The [`Shared::valid_key`] word of a registration with `rkey`.
pub(super) fn valid_key(rkey: u32) -> u64 {
    VALID_KEY | u64::from(rkey)
}

impl Res {
    /// Releases task slot `i`'s mappings and MRs (its `exposed` words cleared first).
    pub(super) fn release_task(&mut self, i: usize) {
        let Res { sh, dirs, fr_free } = self;
        let Some(d) = dirs.get_mut(i) else {
            return;
        };
        if let Some(s) = sh.slots.get(i) {
            for e in &s.exposed {
                e.store(ptask::Exposed::None.encode(), Ordering::Release);
            }
        }
        // In place: only a direction that holds a mapping is moved out.
        for dir in d.iter_mut() {
            if let Some(dr) = dir.take() {
                dr.release(fr_free);
            }
        }
    }

    /// Releases every task's mappings (after the QP was drained).
    pub(super) fn release_all(&mut self) {
        for i in 0..self.dirs.len() {
            self.release_task(i);
        }
    }
}

impl Bound {
    /// Exposes a mapped buffer to the target: DMA key or fast registration (5.1). Returns
    /// the mapping (with the MR index if registered) and what the command's headers need:
    /// keys, address, the MR's new rkey and the rkey to invalidate first. The MR comes from the pool in `res`, which the caller holds (it
    /// records the mapping there next, under the same lock round trip).
    pub(super) fn register(
        &mut self,
        res: &mut Option<Res>,
        sg: MappedSg,
        all_imm: bool,
    ) -> Result<(DirRes, Exposure)> {
        if sg.nents() == 1 && (all_imm || !self.always_register) {
            Stats::inc(&self.st.s.c.reg_dma_key);
            let (addr, _len) = sg.first();
            let lkey = self.sh.lkey;
            return Ok((
                DirRes { sg, fr: None },
                Exposure {
                    lkey,
                    iova: addr,
                    rkey: None,
                    inval: None,
                },
            ));
        }
        let Some(i) = res.as_mut().and_then(|r| r.fr_free.pop()) else {
            Stats::inc(&self.st.s.c.err_reg_pool);
            iser_err!("registration pool empty\n");
            sg.unmap();
            return Err(EAGAIN);
        };
        let (Some(mr), Some(vk)) = (self.fr.get_mut(i), self.sh.valid_key.get(i)) else {
            sg.unmap();
            return Err(EINVAL);
        };
        let old_key = mr.rkey();
        // The previous use was invalidated (remotely, or by `on_rx` before its response was
        // delivered) unless its task ended without a response: then its key is still here,
        // and is invalidated in the chain before the new registration. Taken by a swap, so
        // that `on_rx` cannot invalidate it a second time behind the new registration.
        let prev = vk.swap(0, Ordering::AcqRel);
        let inval = (prev & VALID_KEY != 0).then_some(prev as u32);
        if let Err(e) = mr.map(&sg) {
            // Nothing was posted: the MR keeps its registration and key.
            mr.restore_key(old_key);
            vk.store(prev, Ordering::Release);
            iser_err!(
                "failed to map {} DMA entries for registration: {:?}\n",
                sg.nents(),
                e
            );
            if let Some(r) = res {
                r.fr_free.push(i);
            }
            sg.unmap();
            return Err(e);
        }
        vk.store(valid_key(mr.rkey()), Ordering::Release);
        Stats::inc(&self.st.s.c.reg_fastreg);
        if inval.is_some() {
            Stats::inc(&self.st.s.c.inval_local);
        }
        let (iova, _) = mr.range();
        let (lkey, rkey) = (mr.lkey(), mr.rkey());
        Ok((
            DirRes { sg, fr: Some(i) },
            Exposure {
                lkey,
                iova,
                rkey: Some(rkey),
                inval,
            },
        ))
    }
}

impl Shared {
    /// Whether a registration of task slot `i` still leaves its key valid (a LOCAL_INV of
    /// it would be posted by [`IserConn::invalidate_local`]). Read from the atomics alone;
    /// the slot's registrations stay its own until `Res::release_task`.
    #[inline]
    pub(super) fn key_valid(&self, i: usize) -> bool {
        self.slots.get(i).is_some_and(|k| {
            k.exposed.iter().any(
                |e| match ptask::Exposed::decode(e.load(Ordering::Acquire)) {
                    ptask::Exposed::Mr { idx, rkey } => self
                        .valid_key
                        .get(idx as usize)
                        .is_some_and(|vk| vk.load(Ordering::Acquire) == valid_key(rkey)),
                    _ => false,
                },
            )
        })
    }

    /// Whether `cleanup_task` of task slot `i` has work under `rx`: a response held in the
    /// slot, or a registration of the slot whose key is still valid (the task ended without
    /// its response invalidating it). Read without `rx`, from the atomics the completion side
    /// publishes.
    pub(super) fn rx_cleanup_needed(&self, i: usize) -> bool {
        self.slots
            .get(i)
            .is_some_and(|k| k.held.load(Ordering::Acquire))
            || self.key_valid(i)
    }
}

impl IserConn {
    /// The tasks released by the "Function complete" answer to the task management
    /// request in slot `si`, which `t` names: a LOCAL_INV is posted for each of their
    /// registrations still valid, each counted as a SEND of `si` (see
    /// [`Self::invalidate_local`]). Returns how many tasks had one; an error leaves that
    /// task's key valid, and the caller must not deliver the answer. A LUN or target reset
    /// walks every slot (rare; `rx` held).
    pub(super) fn invalidate_released(
        rq: Option<&RecvQp>,
        sh: &Shared,
        si: usize,
        t: ptask::TmfRef,
    ) -> Result<usize> {
        if let ptask::TmfRef::Task(ki) = t {
            return Self::invalidate_local(rq, sh, ki, si, |_| true).map(usize::from);
        }
        let req_lun = sh
            .slots
            .get(si)
            .map_or(0, |s| s.lun.load(Ordering::Relaxed));
        let mut n = 0;
        for ki in (0..sh.slots.len()).filter(|&ki| ki != si) {
            let covers = |k: &SlotShared| t.covers_lun(req_lun, k.lun.load(Ordering::Relaxed));
            if Self::invalidate_local(rq, sh, ki, si, covers)? {
                n += 1;
            }
        }
        Ok(n)
    }

    /// Posts a signalled LOCAL_INV for each registration of task slot `ki` whose key is still
    /// valid, each counted as a SEND of slot `si`, whose held response its completion
    /// delivers (`rx` held: that completion takes `rx` first, so it cannot run before the
    /// response is held). The key is taken by a compare-exchange, so it is invalidated once:
    /// not again by the MR's next registration, and not here if a new registration replaced
    /// it. Only registrations for which `covers(slot ki)` holds, read after the registration
    /// was (the slot's `lun` belongs to that registration's command). True if one was posted.
    /// An error leaves the key valid: the caller must not deliver the response.
    pub(super) fn invalidate_local(
        rq: Option<&RecvQp>,
        sh: &Shared,
        ki: usize,
        si: usize,
        covers: impl Fn(&SlotShared) -> bool,
    ) -> Result<bool> {
        let (Some(k), Some(s)) = (sh.slots.get(ki), sh.slots.get(si)) else {
            return Ok(false);
        };
        let mut posted = false;
        for e in &k.exposed {
            let ptask::Exposed::Mr { idx, rkey } =
                ptask::Exposed::decode(e.load(Ordering::Acquire))
            else {
                continue;
            };
            if !covers(k) {
                continue;
            }
            let Some(vk) = sh.valid_key.get(idx as usize) else {
                continue;
            };
            let key = valid_key(rkey);
            if vk
                .compare_exchange(key, 0, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
            {
                continue;
            }
            // Torn down meanwhile (not reached: the handle goes back only to drain, and no
            // completion follows the drain).
            let Some(rq) = rq else {
                vk.store(key, Ordering::Release);
                return Err(errno::ENOTCONN());
            };
            // Counted before the post: the completion may run on another CPU before the
            // post returns.
            s.sends_pending.fetch_add(1, Ordering::AcqRel);
            if let Err(err) = rq.post_local_inv(sh.cqe_of(Cqe::Inv(si)), rkey) {
                s.sends_pending.fetch_sub(1, Ordering::AcqRel);
                vk.store(key, Ordering::Release);
                return Err(err);
            }
            posted = true;
        }
        Ok(posted)
    }

    /// Checks a Send with Invalidate against what the task's buffers expose (5.5).
    pub(super) fn remote_invalidate(
        sh: &Shared,
        slot: Option<&SlotShared>,
        rkey: u32,
    ) -> core::result::Result<(), &'static str> {
        if !sh.remote_inv {
            return Err("unexpected remote invalidation");
        }
        let s = slot.ok_or("remote invalidation for an unknown task")?;
        let mut matched = false;
        for e in &s.exposed {
            match ptask::Exposed::decode(e.load(Ordering::Acquire)) {
                ptask::Exposed::None => {}
                ptask::Exposed::DmaKey => {
                    return Err("remote invalidation of an unregistered buffer")
                }
                ptask::Exposed::Mr { idx, rkey: k } => {
                    if k == rkey {
                        if let Some(f) = sh.valid_key.get(idx as usize) {
                            // A duplicate (the key already invalid) is still this task's.
                            let _ = f.compare_exchange(
                                valid_key(rkey),
                                0,
                                Ordering::AcqRel,
                                Ordering::Acquire,
                            );
                            matched = true;
                        }
                    }
                }
            }
        }
        if matched {
            Ok(())
        } else {
            Err("bogus remote invalidation")
        }
    }
}
