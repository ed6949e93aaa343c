"""History-aware centred clipping: a radius colluders cannot inflate, and colluders who push one
direction together (in one round or across rounds) lose their weight.

Theory of operation (one round, n updates sorted by client key, H = the rule's history; every
median below counts row i m_i times, m_i its stake votes, 1 each on a chain without bonds):

    v_0   = coordinate median of the updates
    e_i   = u_i - v_0;  r = lower median |e_i|
    trace_i <- trace_i * keep + unit_sketch(e_i)        (per-client memory across rounds)
    t_i   = (trace_i - coordinate median of the traces) >> 1
    c_i   = k-th largest over j != i of cos(t_i, t_j)        (exact integers, permille)
    lo    = max(sim_low, median_i c_i + (sim_high - sim_low) / 2);  hi = lo + sim_high - sim_low
    w_i   = f(c_i) = 1000 below lo, 0 above hi, linear between          (FoolsGold-like)
    w_i   = 0 if u_i is a near-copy of another update of the round (both sides; fl.aggregate.copies)
           (credit_i below is 0 too for the copier: the later side when the order is known)
    w_i  *= 1000 if a_i >= 0, else max(ALIGN_FLOOR, 1000 + a_i * 1000 / ALIGN_ZERO) / 1000
           (a_i: the client's alignment carried from past rounds; unless every weight would be 0)
    credit_i = w_i, or, when the round's updates were public before it closed, w_i with
           max(f(c_i), f(max over j included before i of cos(t_i, t_j))) in place of f(c_i):
           what the score and the flag use (originals are not blamed for their copies)
    T     = { i : w_i > 0 } (every row if that is none or all of them)
    v     = coordinate median of the rows in T;  r = lower median over T of |u_i - v|
    cap   = H.radius * growth  (no cap in the first round)
    repeat L times:  tau = radius_permille/1000 * min(median_{i in T} |u_i - v|, cap)
                     K   = { i : |u_i - v| <= drop/1000 * tau }
                     v  += floor( sum_{i in K} m_i w_i clip_tau(u_i - v) / sum_{i in K} m_i w_i )
    H.radius <- EMA(H.radius, min(r, cap))
    v_j   <- 0 where the kept clients' weighted sign vote on coordinate j backs v_j too weakly
             (only when sign_permille > 0, off by default; fl/aggregate/sign_vote.py)
    a_i   <- (a_i * ALIGN_KEEP + 1000 cos(u_i, v) * (1000 - ALIGN_KEEP)) / 1000   (v: the aggregate)
    score_i = credit_i, 0 if dropped; flagged if credit_i or the share of u_i kept is below half

Why each piece is there (every update and this rule are public, so the attackers are omniscient):
- Say is bought with stake, not with keys (session 13).  Counting keys let one stake split
  over ten keys at `client_stake_min` outvote a client holding it on one key (tests/econ/
  test_sybil_votes.py: the ten pulled 2.8-16x as far).  With m_i = stake_i // client_stake_min
  (fl/economics/clients.py `stake_votes`) the rule's "fraction of attackers" is a fraction of
  stake, the usual proof-of-stake assumption.  Equal stakes give exactly the key-counting rule
  (the weighted statistics take the unweighted path; the average's m cancels).
- The centre and radius come from the rows that keep weight.  A look-alike row's weight only
  takes it out of the average; left in the median and the radius, nine identical rows at
  Dirichlet 0.1 (IPM) dragged both far enough to drop 8-12 honest updates a round, against
  1-4 without them, and the history carried the damage on.
- Near-copies weigh nothing.  No two honest clients send the same vector, and colluders who
  optimise one vector against the rule send it from every key.  The traces see them on digits,
  not on a two-class task, where every update lies near one line and resembles the rest: on
  breast_cancer nine identical IPM or min-max rows outvoted the honest side (86.7% and 81.4%,
  clean 95.6%) and ten copies of one honest update (ByzFL's Mimic) took it to 76.7%.  The copy
  test is exact and the slashing's own evidence, so no threshold is tuned for this.
- Originals are credited, not weighed.  When updates are public before the round closes, anyone
  can copy an honest update from the mempool under many keys, and the copies resemble their
  original as much as each other: the victim was flagged with them and paid nothing
  (Karimireddy et al.'s mimic attack: 10 of 10 rounds).  A copy can only be sent after its
  original, so a row that resembles no earlier-included row keeps its score and is not
  flagged.  It does not get its aggregation weight back: the first of colluders who send one
  vector looks exactly like a victim, and giving it weight cost 2-3 points on IPM, ALIE and
  min-max at Dirichlet 0.1 and let the adaptive attacker take MNIST-1D from 56.7% to 37.5%
  (docs/robustness.md, "Copies: weigh none, credit the original").  So the first colluder
  is paid like a client, and a copied client's data leaves the aggregate with its copies.
- The radius comes from history and may grow by at most `growth` per round, so identical vectors
  that move the median-based radius in one round cannot widen the acceptance region with it.
- Clipping bounds what one update can do (tau / sum of weights); to move the aggregate far the
  attackers must push the same direction together.  Pushing together is what the similarity
  weights see: honest non-IID deviations from the centre point in their own label mix's
  direction, colluders' in a shared one.  The traces decay geometrically, so a shared direction
  hidden under independent per-round noise still accumulates (signal grows like 1/(1 - keep),
  noise like 1/sqrt(1 - keep**2)) and drift across rounds is seen even when one round is not.
  The default keep is 0.95 (20 rounds of signal against 3.2 of noise): with 0.8 (5 against
  1.7) the slow backdoor of `fedchain eval` hid its shared push under fresh camouflage noise
  in every round and reached 39.5% success at 30% attackers (0.95: 4.3%).  A camouflage
  direction each attacker keeps for the whole run is not averaged out by any memory (see
  docs/robustness.md, "Slow backdoors").
- Clients who push against the aggregate round after round lose their weight: a sign flipper
  sends minus its own non-IID update, unlike every other update, so the similarity weights do
  not see it, but its cosine with the aggregate is negative on average (digits, 30 clients,
  50 rounds, mean over the run: sign flippers -0.19 to +0.04, honest clients -0.004 to 0.40 at
  Dirichlet 0.1, 0.10 to 0.37 at 0.5).  An honest client with a label mix unlike the crowd's
  can sit below 0 for a while, so the weight falls linearly to ALIGN_FLOOR (half) at an EWMA
  of -ALIGN_ZERO / 1000 and never lower: the aggregate is what the alignment is measured
  against, and when attackers pull it their way (drift on breast_cancer, whose two-class
  updates lie on one line: every honest client of the other class is anti-aligned) a zero
  floor let them silence the honest side too (drift 92.6 -> 56.9%; floor 250: 75.5%, floor
  500: 95.0%).  At half weight, 12 sign flippers of 30 act as 6.  An attacker who keeps its
  alignment >= 0 can slow training but not pull it backwards.  The weight takes effect from
  the next round (the alignment is measured on the final aggregate).  It raises no flag: the
  weight it takes is all it costs (in the score, so in the pay), since honest clients with a
  label mix unlike the crowd's sit near the floor too (breast_cancer, clean, seed 0: -0.049,
  weight 0.51).
- A score is trust, not distance: how much of an update the clip kept is in its flag, not in
  its score, which is what the incentives layer pays by.  A clipped update moved the aggregate
  by the full radius, as far as any update can; and the clients clipped round after round are
  the honest ones whose classes the model gets wrong.  Paying by the kept share (until session
  12) paid those least, and paid most to free riders echoing the last change, which sit inside
  the radius: 1.23x an honest client on digits, 2.2x on breast_cancer (now 0.99x and 1.77x;
  docs/robustness.md, "Scores are trust, not distance").  Dropped updates still score 0.
- The sketch is a fixed signed bucket sum to SKETCH_DIM coordinates (identity when the model
  is no larger), normalised to UNIT each round so every round counts the same whatever its size.

Integers only; the bounds (with fl.fixed's: |u| <= 2**20, d <= 2**20, n <= 2**12):
  sketch coordinate <= d * 2**21 = 2**41 (any bucket imbalance); its norm in Python ints;
  scaling it to UNIT multiplies by 2**15 first: <= 2**56
  unit sketch coordinate <= UNIT = 2**15; trace coordinate <= UNIT / (1 - keep) <= 25 * UNIT < 2**20
  trace dot products: exact_gram (|x| <= 2**20, k <= 2**20) -> <= 2**50; cos * 1000 <= 2**60
  weighted sum of clipped deviations <= 2**12 * 1000 * VOTES_MAX * 2**21 = 2**59
  clip product |dev| * tau <= 2**21 * 2**31 = 2**52 (as in centered_clip)
  alignment dot products u . v and |u|**2 in int64: <= 2**20 * 2**20 * 2**20 = 2**60
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from consensus.codec import Value, expect_bytes, expect_int, expect_list, expect_seq
from consensus.crypto import PUBLIC_KEY_BYTES
from consensus.errors import CodecError
from fl.aggregate import flags as flag
from fl.aggregate.copies import named_copies
from fl.aggregate.gram import exact_gram
from fl.aggregate.sign_vote import sign_filter
from fl.aggregate.weighted import weighted_coordinate_median, weighted_lower_median
from fl.errors import FLInvariantError
from fl.fixed import IntArray

SKETCH_DIM = 1024
UNIT = 1 << 15
TRACE_KEEP_MAX_PERMILLE = 960  # fl.params bounds hist_trace_keep_permille by this
TRACE_ABS_MAX = UNIT * 1000 // (1000 - TRACE_KEEP_MAX_PERMILLE)  # 25 * UNIT < 2**20
FLAG_BELOW_PERMILLE = 500
ALIGN_ABS_MAX = 1000
ALIGN_KEEP_PERMILLE = 900  # EWMA of a client's alignment with the aggregate
ALIGN_ZERO_PERMILLE = 100  # a client whose EWMA alignment is this negative ...
ALIGN_FLOOR_PERMILLE = 500  # ... keeps this share of its weight, and never less
_HASH_MULT = np.uint64(0x9E3779B97F4A7C15)


@dataclass(frozen=True, slots=True)
class HistoryParams:
    iterations: int
    radius_permille: int
    drop_permille: int
    growth_permille: int  # the radius may grow by this factor per round (>= 1000)
    ema_permille: int  # weight of this round's median deviation in the radius EMA
    sim_low_permille: int  # similarity at or below which a client keeps its full weight
    sim_high_permille: int  # ... at or above which it has none
    trace_keep_permille: int  # geometric decay of the per-client traces (<= 960)
    clients_max: int  # traces kept
    stale_rounds: int  # a trace not refreshed for this many rounds is forgotten
    sim_rank: int = 1  # a client is judged by its k-th largest cosine with another
    sign_permille: int = 0  # coordinates with less weighted sign agreement are zeroed (0: off)
    sign_mode: str = "zero"  # fl.aggregate.sign_vote.MODES


@dataclass(frozen=True, slots=True)
class Trace:
    client: bytes
    last_round: int
    vector: IntArray  # SKETCH_DIM int64, |x| <= TRACE_ABS_MAX; never mutated
    alignment: int = 0  # EWMA of cos(update, aggregate), permille, |x| <= 1000


@dataclass(frozen=True, slots=True)
class RuleHistory:
    """What the history rule carries from round to round (part of the app state)."""

    rounds: int = 0  # rounds this rule has aggregated
    radius: int = 0  # EMA of the median deviation norm, model units; 0 before the first round
    traces: tuple[Trace, ...] = ()  # sorted by client key

    def encode(self) -> Value:
        return [
            self.rounds,
            self.radius,
            [
                [t.client, t.last_round, t.vector.astype("<i4").tobytes(), t.alignment]
                for t in self.traces
            ],
        ]

    @classmethod
    def decode(cls, value: Value, clients_max: int = 1 << 16) -> "RuleHistory":
        rounds_v, radius_v, traces_v = expect_list(value, 3, "rule history")
        rounds = expect_int(rounds_v, "rule history rounds", 0)
        traces: list[Trace] = []
        for item in expect_seq(traces_v, "rule history traces", clients_max):
            client_v, last_v, vector_v, align_v = expect_list(item, 4, "trace")
            vector = np.frombuffer(
                expect_bytes(vector_v, "trace vector", SKETCH_DIM * 4), dtype="<i4"
            ).astype(np.int64)
            if vector.size != SKETCH_DIM or int(np.abs(vector).max()) > TRACE_ABS_MAX:
                raise CodecError("trace vector has the wrong size or is out of range")
            client = expect_bytes(client_v, "trace client", PUBLIC_KEY_BYTES)
            if traces and traces[-1].client >= client:
                raise CodecError("traces not sorted by client key")
            alignment = expect_int(align_v, "trace alignment", -ALIGN_ABS_MAX, ALIGN_ABS_MAX)
            last = expect_int(last_v, "trace round", 0, rounds)
            traces.append(Trace(client, last, vector, alignment))
        return cls(rounds, expect_int(radius_v, "rule history radius", 0, 1 << 32), tuple(traces))


@dataclass(frozen=True, slots=True)
class SketchMap:
    """Coordinate j goes to bucket[j] with sign[j]; the hashed map is kept sorted by bucket
    (`order`, and the runs' `starts` and buckets) so a sketch is one reduceat per update."""

    size: int
    sign: IntArray
    order: IntArray
    starts: IntArray
    run_buckets: IntArray


def sketch_map(size: int) -> SketchMap:
    """Identity for small models, else a fixed multiplicative hash (top 10 bits: the bucket)."""
    index = np.arange(size, dtype=np.uint64)
    if size <= SKETCH_DIM:
        empty = np.zeros(0, dtype=np.int64)
        return SketchMap(size, np.ones(size, dtype=np.int64), empty, empty, empty)
    mixed = index * _HASH_MULT  # wraps mod 2**64: the same on every machine
    bucket = (mixed >> np.uint64(54)).astype(np.int64)
    sign = 1 - 2 * ((mixed >> np.uint64(31)) & np.uint64(1)).astype(np.int64)
    order = np.argsort(bucket, kind="stable")
    ordered = bucket[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    return SketchMap(size, sign, order, starts, ordered[starts])


def unit_sketch(deviation: IntArray, mapping: SketchMap) -> IntArray:
    """The signed bucket sum of `deviation`, scaled to norm UNIT (floor), or zeros."""
    raw = np.zeros(SKETCH_DIM, dtype=np.int64)
    if mapping.size <= SKETCH_DIM:
        raw[: deviation.size] = deviation  # the identity map: bucket j, sign +1
    else:
        # int64 sums per bucket run (np.add.at is ~20x slower on a large model); |raw| <= 2**41
        signed = (deviation * mapping.sign)[mapping.order]
        raw[mapping.run_buckets] = np.add.reduceat(signed, mapping.starts)
    norm = math.isqrt(sum(x * x for x in raw.tolist()))
    if norm == 0:
        return raw
    out: IntArray = np.floor_divide(raw * UNIT, norm)  # |raw * UNIT| <= 2**56
    return out


@dataclass(frozen=True, slots=True)
class Resemblance:
    """Per row, permille: its weight in the aggregate, the weight its score and flag use, and
    its k-th largest cosine to another row."""

    weights: list[int]
    credit: list[int]
    top: list[int]


def similarity_weights(
    vectors: IntArray,
    low: int,
    high: int,
    rank: int = 1,
    included: Sequence[int] | None = None,
    votes: Sequence[int] | None = None,
) -> Resemblance:
    """Weights from the k-th largest cosine of each row to another (k = `rank`, or the smallest
    when there are fewer other rows), exact integers.

    `included` (each row's place in the order the chain included the updates, when they were
    public before the round closed) credits originals: a row's credit is the larger of its
    weight and the weight its single most similar earlier-included row would give it.  The
    first-included of a group of look-alikes keeps its credit; every later one resembles an
    earlier one.  Without it the credit is the weight.  `votes` (stake-bought, one each when
    omitted) weigh the rows in the traces' median and in the crowd's median similarity."""
    n = vectors.shape[0]
    votes = [1] * n if votes is None else votes
    if n < 2:
        return Resemblance([1000] * n, [1000] * n, [0] * n)
    # Centred on the coordinate median of the traces: what every honest trace shares (the
    # opposite of a coalition's pull on the median, say) is not resemblance.  Halved so that
    # |x| <= 2**20 holds for exact_gram.
    centred = weighted_coordinate_median(vectors, votes)
    gram = exact_gram((vectors - centred) >> 1)
    norms = np.array([math.isqrt(max(0, int(g))) for g in np.diagonal(gram).tolist()], np.int64)
    denominators = np.maximum(1, norms[:, None] * norms[None, :])  # <= 2**50
    cos = np.floor_divide(gram * 1000, denominators)  # |gram * 1000| <= 2**60
    np.fill_diagonal(cos, -1000)
    cos[norms == 0, :] = 0  # a zero trace resembles nothing
    cos[:, norms == 0] = 0
    np.fill_diagonal(cos, -1000)
    k = min(rank, n - 1)
    top = [min(1000, int(x)) for x in np.sort(cos, axis=1)[:, n - k].tolist()]
    # Judged against the crowd as well: a coalition that shifts the median makes the honest
    # deviations share its opposite direction, so they resemble one another too; but the
    # coalition is a minority, so the median client's similarity is an honest one.
    width = high - low
    low = max(low, weighted_lower_median(top, votes) + width // 2)
    high = low + width
    weights = [_weight(c, low, high) for c in top]
    if included is None:
        return Resemblance(weights, weights, top)
    place = np.array(included, dtype=np.int64)
    earlier = place[None, :] < place[:, None]  # earlier[i, j]: j was included before i
    closest_earlier = np.where(earlier, cos, -1000).max(axis=1).tolist()
    credit = [
        max(w, _weight(min(1000, int(c)), low, high))
        for w, c in zip(weights, closest_earlier, strict=True)
    ]
    return Resemblance(weights, credit, top)


def _weight(similarity: int, low: int, high: int) -> int:
    """1000 at or below `low`, 0 at or above `high`, linear between (permille)."""
    if similarity <= low:
        return 1000
    if similarity >= high:
        return 0
    return 1000 * (high - similarity) // (high - low)


def history_clip(
    matrix: IntArray,
    keys: tuple[bytes, ...],
    history: RuleHistory,
    p: HistoryParams,
    included: Sequence[int] | None = None,
    pairs: Sequence[tuple[bytes, bytes]] = (),
    votes: Sequence[int] | None = None,
) -> tuple[IntArray, list[int], list[str], RuleHistory]:
    """Aggregate `matrix` (rows in `keys` order, sorted) and return the next history.

    `included`: each row's place in the chain's inclusion order when the round's updates were
    public before it closed (see `similarity_weights`); None when they were committed first.
    It changes scores and flags, never the aggregate.  `pairs`: the round's near-copy pairs
    (earlier, later included; fl/aggregate/copies.py): both sides weigh nothing, and the copiers
    (the later side when `included` is given, else both) are scored 0 and flagged.  `votes`:
    each row's stake-bought say (fl/economics/clients.py `stake_votes`; one each when omitted):
    a row counts votes[i] times in every median and radius and in the weighted average, so a
    stake split over many keys says no more than on one key.  Equal votes change nothing."""
    n, size = matrix.shape
    if n != len(keys) or list(keys) != sorted(keys):
        raise FLInvariantError("history_clip needs rows sorted by client key")
    votes = [1] * n if votes is None else list(votes)
    centre = weighted_coordinate_median(matrix, votes)
    deviations = matrix - centre
    norms = [math.isqrt(int(x)) for x in np.einsum("ij,ij->i", deviations, deviations)]
    measured = weighted_lower_median(norms, votes)
    cap = history.radius * p.growth_permille // 1000 if history.radius > 0 else None

    # Traces: decay the old, add this round's unit sketch of the deviation from the median.
    mapping = sketch_map(size)
    old = {t.client: t for t in history.traces}
    vectors = np.zeros((n, SKETCH_DIM), dtype=np.int64)
    for i, key in enumerate(keys):
        previous = old.get(key)
        fresh = unit_sketch(deviations[i], mapping)
        if previous is not None:
            fresh = fresh + np.floor_divide(previous.vector * p.trace_keep_permille, 1000)
        vectors[i] = np.clip(fresh, -TRACE_ABS_MAX, TRACE_ABS_MAX)  # the bound holds anyway
    resemblance = similarity_weights(
        vectors, p.sim_low_permille, p.sim_high_permille, p.sim_rank, included, votes
    )
    weights, credit = resemblance.weights, resemblance.credit
    copied = {client for pair in pairs for client in pair}
    copiers = named_copies(pairs, originals_first=included is not None)
    weights = [0 if key in copied else w for key, w in zip(keys, weights, strict=True)]
    credit = [0 if key in copiers else c for key, c in zip(keys, credit, strict=True)]
    if sum(weights) == 0:  # everyone resembles someone: nothing to tell apart, weigh equally
        weights = [1000] * n
        credit = [0 if key in copiers else 1000 for key in keys]  # a copier is never credited
    past_alignment = [old[key].alignment if key in old else 0 for key in keys]
    align_weights = [
        1000 if a >= 0 else max(ALIGN_FLOOR_PERMILLE, 1000 + a * 1000 // ALIGN_ZERO_PERMILLE)
        for a in past_alignment
    ]
    if any(w * a for w, a in zip(weights, align_weights, strict=True)):
        weights = [w * a // 1000 for w, a in zip(weights, align_weights, strict=True)]
        credit = [w * a // 1000 for w, a in zip(credit, align_weights, strict=True)]

    # The centre starts at, and the radius is measured from, the rows that keep weight: rows
    # given none (look-alikes, copies) still moved the all-row median and radius, and nine identical
    # IPM rows at Dirichlet 0.1 dragged them far enough to drop 8-12 honest updates a round.
    trusted = [i for i in range(n) if weights[i] > 0]
    if 0 < len(trusted) < n:
        centre = weighted_coordinate_median(matrix[trusted], [votes[i] for i in trusted])
        deviations = matrix - centre
        norms = [math.isqrt(int(x)) for x in np.einsum("ij,ij->i", deviations, deviations)]
        measured = weighted_lower_median([norms[i] for i in trusted], [votes[i] for i in trusted])
    else:
        trusted = list(range(n))

    kept_permille = [1000] * n
    dropped = [False] * n
    for iteration in range(p.iterations):
        if iteration:
            deviations = matrix - centre
            norms = [math.isqrt(int(x)) for x in np.einsum("ij,ij->i", deviations, deviations)]
        spread = weighted_lower_median([norms[i] for i in trusted], [votes[i] for i in trusted])
        base = spread if cap is None else min(spread, cap)
        tau = max(1, base * p.radius_permille // 1000)
        for i, norm in enumerate(norms):
            kept_permille[i] = 1000 if norm <= tau else tau * 1000 // norm
            dropped[i] = p.drop_permille > 0 and norm * 1000 > p.drop_permille * tau
        if all(dropped[i] or weights[i] == 0 for i in range(n)):
            dropped = [False] * n  # nothing would be left: keep everyone, as centered_clip does
        total = 0
        for i, norm in enumerate(norms):
            if dropped[i] or weights[i] == 0:
                deviations[i] = 0
                continue
            total += weights[i] * votes[i]
            if norm > tau:
                deviations[i] = np.floor_divide(deviations[i] * tau, norm)
            deviations[i] *= weights[i] * votes[i]
        if total == 0:  # every kept weight is 0 (guarded above): leave the centre
            break
        centre = centre + np.floor_divide(deviations.sum(axis=0), total)

    if p.sign_permille > 0:
        voters = [0 if dropped[i] else weights[i] * votes[i] for i in range(n)]
        centre, _ = sign_filter(centre, matrix, voters, p.sign_permille, p.sign_mode)

    radius_sample = measured if cap is None else min(measured, cap)
    radius = (
        radius_sample
        if history.radius == 0
        else (history.radius * (1000 - p.ema_permille) + radius_sample * p.ema_permille) // 1000
    )
    flags, scores = [], []
    for i in range(n):
        if dropped[i]:
            flags.append(flag.dropped("history_clip"))
            scores.append(0)
            continue
        scores.append(credit[i])
        if keys[i] in copiers:
            flags.append("history_clip: a near-copy of another update of the round")
        elif credit[i] < FLAG_BELOW_PERMILLE:
            similarity = resemblance.top[i]
            flags.append(f"history_clip: moves with others (similarity {similarity} permille)")
        elif kept_permille[i] < FLAG_BELOW_PERMILLE:
            flags.append(flag.clipped("history_clip", kept_permille[i]))
        else:
            flags.append("")
    alignment = _alignments(matrix, centre, past_alignment)
    return centre, scores, flags, _next_history(history, keys, vectors, alignment, radius, p)


def _alignments(matrix: IntArray, aggregate: IntArray, past: list[int]) -> list[int]:
    """EWMA of each client's cosine with the round's aggregate, permille (exact integers:
    |u . a| <= 2**60 by the bounds of fl.fixed)."""
    dots = np.einsum("ij,j->i", matrix, aggregate).tolist()
    norms = np.einsum("ij,ij->i", matrix, matrix).tolist()
    agg_sq = int(np.dot(aggregate, aggregate))
    out = []
    for dot, norm_sq, before in zip(dots, norms, past, strict=True):
        denominator = math.isqrt(int(norm_sq) * agg_sq)
        cos = 0 if denominator == 0 else max(-1000, min(1000, int(dot) * 1000 // denominator))
        out.append((before * ALIGN_KEEP_PERMILLE + cos * (1000 - ALIGN_KEEP_PERMILLE)) // 1000)
    return out


def _next_history(
    history: RuleHistory,
    keys: tuple[bytes, ...],
    vectors: IntArray,
    alignment: list[int],
    radius: int,
    p: HistoryParams,
) -> RuleHistory:
    now = history.rounds  # this round's index
    merged = {t.client: t for t in history.traces}
    for i, key in enumerate(keys):
        merged[key] = Trace(key, now, vectors[i].copy(), alignment[i])
    live = [t for t in merged.values() if now - t.last_round < p.stale_rounds]
    if len(live) > p.clients_max:  # keep the most recently seen; ties by client key
        live.sort(key=lambda t: (-t.last_round, t.client))
        live = live[: p.clients_max]
    live.sort(key=lambda t: t.client)
    return RuleHistory(now + 1, radius, tuple(live))
