"""Per-prompt reward history with bounded memory and batched kernel-weighted lookups.

KAE needs, for every prompt ``x`` in the batch at step ``i``, kernel-weighted sums
over that prompt's past rewards ``{(I_j, Z_j)}``:

    sum_j K((i - I_j)/(i h)) Z_j,   sum_j K((i - I_j)/(i h)),   ...

Layout
------
The kernel weight depends on a past reward only through its step ``I_j``, so
the rewards a prompt received at one step are stored as one *record*
``(step, n, sum Z, sum Z^2)``. This is exact for every statistic KAE and its
variants need (weighted counts, sums, second moments, step moments), and
divides memory and lookup work by the group size ``G``.

Records live in a structure of arrays ``(n_slots, cap)`` (one row per prompt,
a ring buffer in chronological order), so a batch lookup is one gather of
``(n_prompts_in_batch, cap)`` blocks and a few vectorised reductions; appending
a step writes one record per prompt (``O(1)`` amortised: rows and ``cap`` grow by
doubling). Before writing, the batch's rows are checked for dead records, one
vectorised pass over the same ``(n_prompts_in_batch, cap)`` block a lookup
reads. Empty cells hold ``n = 0`` so they contribute exactly zero.

Bounded memory
--------------
*Dead records.* With a compact kernel (``K(u) = 0`` for ``|u| > s``) a record
at step ``I`` has weight zero at step ``i'`` iff ``(i' - I)/(i' h) > s``, i.e.
``I < i'(1 - s h)``. The right-hand side is nondecreasing in ``i'`` (its
derivative is ``1 - s h >= 0`` when ``s h <= 1``; when ``s h > 1`` no record
ever dies), and steps never go backwards, so a record dead at the current step
``i`` is dead at every later step: ``u(i') = (1 - I/i')/h`` only grows with
``i'``. Such records are dropped (with a ``1e-9`` relative margin so float
rounding can never drop a record whose weight would still be nonzero), which
never changes any result (the tests check this against an unbounded history).

*Cap.* The live window spans ``i h`` steps, which grows with ``i``; and
infinite-support kernels (gaussian, exponential) never zero a weight. So each
prompt also keeps at most ``max_per_prompt`` records (distinct steps), dropping
the oldest first -- for the monotone kernels here, the ones with the smallest
weight. A prompt holds about ``i h f`` live records, ``f`` the share of steps
that serve it (``J / steps_per_epoch`` under the paper's schedule); at the
paper's 200-500 steps the default 512 cannot bind (``i h <= 100``), and in
long runs it binds only once ``i h f > 512``. Where it binds, KAE's sums lose
the oldest, least weighted records of the window (``dropped_capped`` counts
them).

Prompts whose records all died are forgotten (their row is reused).

Examples
--------
>>> import numpy as np
>>> from kernelvalue.advantage import RewardHistory
>>> h = RewardHistory("triangular", bandwidth=1.0)
>>> h.append(["a"], counts=[2], sums=[1.0], sumsq=[1.0], step=1)
>>> float(h.lookup(["a"], step=2)["w0"][0])   # K((2-1)/(2*1.0)) * 2 = 0.5 * 2
1.0
>>> float(h.lookup(["a"], step=2, bandwidth=0.5)["wz"][0])   # K(1) * 1.0 = 0
0.0
"""

from __future__ import annotations

import numpy as np

from ..kernels import get_kernel
from .base import check_positive, check_positive_int, key_rows

__all__ = ["RewardHistory", "MOMENTS"]

# Names of the kernel-weighted sums lookup() can return; d = (I_j - i)/(i h) = -u.
MOMENTS = {
    "w0": "sum_j w_j n_j (weighted count)",
    "wz": "sum_j w_j s_j (weighted reward sum)",
    "wzz": "sum_j w_j ss_j (weighted sum of squared rewards)",
    "w2": "sum_j w_j^2 n_j (for the effective sample size)",
    "wd": "sum_j w_j n_j d_j",
    "wdd": "sum_j w_j n_j d_j^2",
    "wdz": "sum_j w_j s_j d_j",
}

# Relative margin on the death test: a record is dropped only when its scaled
# distance exceeds the support by far more than float rounding (~1e-16).
_DEATH_MARGIN = 1e-9


class RewardHistory:
    """Per-prompt store of past rewards, aggregated by step.

    Parameters
    ----------
    kernel : str or Kernel, default "triangular"
        Kernel of the lookups (``kernelvalue.kernels.get_kernel``).
    bandwidth : float, default 0.2
        Relative bandwidth ``h`` of lookups, and the largest one the dead-record
        rule must keep valid (lookups with a larger ``h`` would miss dropped
        records, so they are refused).
    max_per_prompt : int or None, default 512
        Most records (distinct steps) kept per prompt; ``None`` = no cap (memory
        then grows with the window ``i h``; infinite-support kernels never drop).
    sweep_every : int, default 16
        Every this many appended steps all prompts (not just the batch's) are
        pruned and empty rows released.

    Attributes
    ----------
    n_records : int
        Records held (one per prompt and step).
    n_entries : int
        Rewards represented (sum of the records' counts).
    nbytes : int
        Bytes held by the arrays.
    dropped_capped : int
        Records the cap dropped while their weight could still be nonzero.

    Examples
    --------
    >>> h = RewardHistory("triangular", bandwidth=1.0)
    >>> h.append([7, 9], counts=[4, 4], sums=[3.0, 1.0], sumsq=[3.0, 1.0], step=1)
    >>> h.lookup([9, 7, 8], step=2)["wz"]     # K((2-1)/(2*1)) = 0.5 times the sums; 8 is unknown
    array([0.5, 1.5, 0. ])
    >>> h.n_records
    2
    """

    def __init__(self, kernel="triangular", bandwidth=0.2, max_per_prompt=512, sweep_every=16):
        self.kernel = get_kernel(kernel)
        self.bandwidth = check_positive("bandwidth", bandwidth)
        if max_per_prompt is not None:
            max_per_prompt = check_positive_int("max_per_prompt (or None for no cap)", max_per_prompt)
        self.max_per_prompt = max_per_prompt
        self.sweep_every = check_positive_int("sweep_every", sweep_every)
        self._reset(cap=self._min_cap)

    @property
    def _min_cap(self) -> int:
        # Rows start (and shrink back) to 4 records, never past the cap: a cap of 1-3 must bind.
        return 4 if self.max_per_prompt is None else min(4, self.max_per_prompt)

    def _reset(self, cap, rows=8):
        self._index: dict = {}
        self._keys: list = []
        self._cap = cap
        self._step = np.zeros((rows, cap), dtype=np.int64)
        self._n = np.zeros((rows, cap))
        self._s = np.zeros((rows, cap))
        self._ss = np.zeros((rows, cap))
        self._head = np.zeros(rows, dtype=np.int64)
        self._len = np.zeros(rows, dtype=np.int64)
        self._last_step = 0
        self._last_sweep = 0
        self._dropped_capped = 0

    # ------------------------------------------------------------------ sizes
    @property
    def n_prompts(self) -> int:
        return len(self._keys)

    @property
    def n_records(self) -> int:
        return int(self._len[: len(self._keys)].sum())

    @property
    def n_entries(self) -> int:
        return int(round(float(self._n[: len(self._keys)].sum())))

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self._step, self._n, self._s, self._ss, self._head, self._len))

    @property
    def dropped_capped(self) -> int:
        """Records dropped by the ``max_per_prompt`` cap (not by the dead-record rule) so far."""
        return self._dropped_capped

    @property
    def capacity(self) -> int:
        """Current per-prompt row capacity (records)."""
        return self._cap

    def __len__(self) -> int:
        return self.n_entries

    def __contains__(self, key) -> bool:
        return key in self._index

    # ------------------------------------------------------------------ slots
    def slots(self, keys, create=False) -> np.ndarray:
        """Row of each key (``-1`` where unknown, unless ``create``)."""
        out = key_rows(self._index, self._keys, keys, create)
        if create and len(self._keys) > self._step.shape[0]:
            self._grow_rows(len(self._keys))
        return out

    def _grow_rows(self, needed):
        rows = max(needed, 2 * self._step.shape[0])
        extra = rows - self._step.shape[0]
        self._step = np.concatenate([self._step, np.zeros((extra, self._cap), np.int64)])
        self._n = np.concatenate([self._n, np.zeros((extra, self._cap))])
        self._s = np.concatenate([self._s, np.zeros((extra, self._cap))])
        self._ss = np.concatenate([self._ss, np.zeros((extra, self._cap))])
        self._head = np.concatenate([self._head, np.zeros(extra, np.int64)])
        self._len = np.concatenate([self._len, np.zeros(extra, np.int64)])

    def _relayout(self, new_cap):
        # Rows re-laid in chronological order from column 0 (head = 0).
        rows = self._step.shape[0]
        k = min(new_cap, self._cap)
        cols = (self._head[:, None] + np.arange(k)[None, :]) % self._cap
        r = np.arange(rows)[:, None]
        for name in ("_step", "_n", "_s", "_ss"):
            old = getattr(self, name)
            new = np.zeros((rows, new_cap), dtype=old.dtype)
            new[:, :k] = old[r, cols]
            setattr(self, name, new)
        self._head = np.zeros(rows, dtype=np.int64)
        self._cap = new_cap

    # ------------------------------------------------------------------ pruning
    def _cutoff_u(self, bandwidth) -> float:
        """Scaled distance beyond which a record is dead forever (inf: never)."""
        s = self.kernel.support
        if not np.isfinite(s) or s * bandwidth >= 1.0:
            return np.inf
        return s * (1.0 + _DEATH_MARGIN)

    def prune(self, step: int, rows=None) -> int:
        """Drop records whose weight is zero at ``step`` and every later step.

        Returns the number of records dropped. ``rows=None`` prunes every prompt.
        """
        thr = self._cutoff_u(self.bandwidth)
        if not np.isfinite(thr):
            return 0
        if rows is None:
            rows = np.arange(len(self._keys))
        if rows.size == 0:
            return 0
        steps = self._step[rows]
        u = (step - steps) / (step * self.bandwidth)
        dead = (self._n[rows] > 0) & (u > thr)
        n_dead = dead.sum(axis=1)
        if not n_dead.any():
            return 0
        hit = n_dead > 0
        r, dm = rows[hit], dead[hit]
        for arr in (self._n, self._s, self._ss):
            sub = arr[r]
            sub[dm] = 0.0
            arr[r] = sub
        # Dead records are the oldest ones (u decreases with I_j and rows are
        # chronological), so they form the prefix at the head of each ring.
        self._head[r] = (self._head[r] + n_dead[hit]) % self._cap
        self._len[r] -= n_dead[hit]
        return int(n_dead.sum())

    def _sweep(self, step):
        self.prune(step)
        alive = self._len[: len(self._keys)] > 0
        if not alive.all():
            keep = np.flatnonzero(alive)
            self._keys = [self._keys[i] for i in keep]
            self._index = {k: i for i, k in enumerate(self._keys)}
            for name in ("_step", "_n", "_s", "_ss", "_head", "_len"):
                arr = getattr(self, name)
                new = np.zeros_like(arr)
                new[: keep.size] = arr[keep]
                setattr(self, name, new)
        longest = int(self._len[: len(self._keys)].max()) if self._keys else 0
        if self._cap > 4 and longest <= self._cap // 4:
            self._relayout(max(self._min_cap, self._cap // 2))
        self._last_sweep = step

    # ------------------------------------------------------------------ append
    def append(self, keys, counts, sums, sumsq, step) -> None:
        """Record one step's rewards: per distinct key, the count, sum and sum of squares.

        Parameters
        ----------
        keys : list of hashables, distinct
        counts, sums, sumsq : array-like, shape (len(keys),)
        step : int
            Must not be smaller than the last appended step; appending the same
            step again adds to that step's records.
        """
        step = int(step)
        if step < self._last_step:
            raise ValueError(f"step={step} goes backwards (history already holds step {self._last_step}).")
        counts = np.asarray(counts, dtype=np.float64).reshape(-1)
        sums = np.asarray(sums, dtype=np.float64).reshape(-1)
        sumsq = np.asarray(sumsq, dtype=np.float64).reshape(-1)
        if not (counts.shape[0] == sums.shape[0] == sumsq.shape[0] == len(keys)):
            raise ValueError("keys, counts, sums and sumsq must have the same length.")
        if np.any(counts <= 0):
            raise ValueError("counts must be >= 1 for every key appended.")
        rows = self.slots(keys, create=True)
        self.prune(step, rows)
        cap = self._cap
        head, length = self._head[rows], self._len[rows]
        last = (head + length - 1) % cap
        merge = (length > 0) & (self._step[rows, last] == step)
        new = ~merge
        if merge.any():
            r, c = rows[merge], last[merge]
            self._n[r, c] += counts[merge]
            self._s[r, c] += sums[merge]
            self._ss[r, c] += sumsq[merge]
        if new.any():
            rn = rows[new]
            full = self._len[rn] >= self._cap
            if full.any() and (self.max_per_prompt is None or self._cap < self.max_per_prompt):
                target = 2 * self._cap if self.max_per_prompt is None else min(2 * self._cap, self.max_per_prompt)
                self._relayout(target)
            full = self._len[rn] >= self._cap
            if full.any():  # the cap binds: the oldest record of those prompts goes
                rf = rn[full]
                hf = self._head[rf]
                for arr in (self._n, self._s, self._ss):
                    arr[rf, hf] = 0.0
                self._head[rf] = (hf + 1) % self._cap
                self._len[rf] -= 1
                self._dropped_capped += int(rf.size)
            pos = (self._head[rn] + self._len[rn]) % self._cap
            self._step[rn, pos] = step
            self._n[rn, pos] = counts[new]
            self._s[rn, pos] = sums[new]
            self._ss[rn, pos] = sumsq[new]
            self._len[rn] += 1
        self._last_step = step
        if step - self._last_sweep >= self.sweep_every:
            self._sweep(step)

    # ------------------------------------------------------------------ lookup
    def lookup(self, keys=None, step=None, bandwidth=None, moments=("w0", "wz"), rows=None) -> dict:
        """Kernel-weighted sums over each key's history at ``step``.

        Parameters
        ----------
        keys : list of hashables
            Prompts to look up (unknown ones get zeros). Or pass ``rows`` from
            :meth:`slots` instead.
        step : int
            The current step ``i``; weights are ``K((i - I_j)/(i h))``.
        bandwidth : float or array (H,), optional
            Defaults to the history's ``bandwidth``; must not exceed it when the
            dead-record rule is active (dropped records would be missed). An
            array gives results of shape ``(m, H)``.
        moments : tuple of str
            Which sums (see :data:`MOMENTS`).

        Returns
        -------
        dict of name -> ndarray (m,) or (m, H)
        """
        if step is None:
            raise TypeError("lookup needs step=... (the current training step i).")
        h = self.bandwidth if bandwidth is None else np.asarray(bandwidth, dtype=np.float64)
        multi = np.ndim(h) > 0
        if np.any(np.asarray(h) <= 0) or not np.all(np.isfinite(h)):
            raise ValueError(f"bandwidth must be finite and > 0, got {bandwidth!r}.")
        if np.isfinite(self._cutoff_u(self.bandwidth)) and np.max(h) > self.bandwidth * (1 + 1e-12):
            raise ValueError(
                f"bandwidth={np.max(h)} exceeds the history's bandwidth={self.bandwidth}: records outside the "
                "smaller window were already dropped. Build the RewardHistory with the largest bandwidth you use."
            )
        bad = set(moments) - set(MOMENTS)
        if bad:
            raise ValueError(f"unknown moments {sorted(bad)}; choose from {sorted(MOMENTS)}.")
        if rows is None:
            rows = self.slots(keys)
        m = rows.shape[0]
        shape = (m, np.size(h)) if multi else (m,)
        out = {name: np.zeros(shape) for name in moments}
        known = rows >= 0
        if not known.any():
            return out
        r = rows[known] if not known.all() else rows
        n = self._n[r]
        u = (step - self._step[r]) / step  # (m', cap), still to divide by h
        if multi:
            u = u[:, :, None] / h[None, None, :]
            n = n[:, :, None]
        else:
            u = u / h
        w = self._weights(u)
        res = {}
        if multi:
            # (m, cap, H) weights against (m, cap) data: contract the record axis.
            def wsum(weights, data):
                return np.einsum("mch,mc->mh", weights, data)

            n = n[:, :, 0]
        else:
            def wsum(weights, data):
                return (weights * data).sum(axis=1)

        for name in moments:
            if name == "w0":
                val = wsum(w, n)
            elif name == "wz":
                val = wsum(w, self._s[r])
            elif name == "wzz":
                val = wsum(w, self._ss[r])
            elif name == "w2":
                val = wsum(w * w, n)
            elif name == "wd":
                val = -wsum(w * u, n)
            elif name == "wdd":
                val = wsum(w * u * u, n)
            else:  # wdz
                val = -wsum(w * u, self._s[r])
            res[name] = val
        for name in moments:
            if known.all():
                out[name] = res[name]
            else:
                out[name][known] = res[name]
        return out

    def _weights(self, u):
        """``K(u)`` for ``u >= 0``; a compact kernel is evaluated only inside its
        support (most of a long row lies outside a small window), zeros elsewhere."""
        kern = self.kernel
        if not kern.compact:
            return kern(u)
        inside = u <= kern.support
        w = np.zeros_like(u)
        w[inside] = kern(u[inside])
        return w

    def records(self, key) -> np.ndarray:
        """One prompt's records in chronological order: array (k, 4) of
        ``(step, n, sum Z, sum Z^2)`` (empty for an unknown key)."""
        row = self._index.get(key)
        if row is None:
            return np.zeros((0, 4))
        k = int(self._len[row])
        cols = (self._head[row] + np.arange(k)) % self._cap
        return np.stack([self._step[row, cols].astype(np.float64), self._n[row, cols], self._s[row, cols], self._ss[row, cols]], axis=1)

    def keys(self) -> list:
        """The prompts currently held."""
        return list(self._keys)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        """Exact, picklable state (the raw layout, so sums after a resume are bit-identical)."""
        p = len(self._keys)
        return {
            "kernel": self.kernel.name,
            "bandwidth": self.bandwidth,
            "max_per_prompt": self.max_per_prompt,
            "sweep_every": self.sweep_every,
            "keys": list(self._keys),
            "cap": self._cap,
            "step": self._step[:p].copy(),
            "n": self._n[:p].copy(),
            "s": self._s[:p].copy(),
            "ss": self._ss[:p].copy(),
            "head": self._head[:p].copy(),
            "len": self._len[:p].copy(),
            "rows": int(self._step.shape[0]),
            "last_step": self._last_step,
            "last_sweep": self._last_sweep,
            "dropped_capped": self._dropped_capped,
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict` output; the kernel and bandwidth must match."""
        if state["kernel"] != self.kernel.name or float(state["bandwidth"]) != self.bandwidth:
            raise ValueError(
                f"history state was saved with kernel={state['kernel']!r}, bandwidth={state['bandwidth']}; this "
                f"history uses kernel={self.kernel.name!r}, bandwidth={self.bandwidth}. Build it with the same ones."
            )
        self.max_per_prompt = state["max_per_prompt"]
        self.sweep_every = int(state["sweep_every"])
        cap, rows = int(state["cap"]), int(state["rows"])
        self._reset(cap=cap, rows=rows)
        p = len(state["keys"])
        self._keys = list(state["keys"])
        self._index = {k: i for i, k in enumerate(self._keys)}
        self._step[:p] = state["step"]
        self._n[:p] = state["n"]
        self._s[:p] = state["s"]
        self._ss[:p] = state["ss"]
        self._head[:p] = state["head"]
        self._len[:p] = state["len"]
        self._last_step = int(state["last_step"])
        self._last_sweep = int(state["last_sweep"])
        self._dropped_capped = int(state["dropped_capped"])

    def __repr__(self) -> str:
        return (
            f"RewardHistory(kernel={self.kernel.name!r}, bandwidth={self.bandwidth}, prompts={self.n_prompts}, "
            f"records={self.n_records}, entries={self.n_entries})"
        )
