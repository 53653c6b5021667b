package klrl.rollout;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDArrays;
import ai.djl.ndarray.NDList;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.NDScope;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import ai.djl.pytorch.engine.PtNDArray;
import ai.djl.pytorch.jni.JniUtils;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;
import java.util.function.Function;
import klrl.model.Decoder;
import klrl.model.KvCache;

/**
 * Batched sampling with a preallocated KV cache. Prompts are left-padded; the additive mask hides
 * padding and positions count only real tokens, so a padded row computes what it would alone.
 * Each sample draws its uniforms from its own seeded stream, so results do not depend on batch
 * composition; finished rows are dropped from the batch (cache rows included) as they accumulate.
 */
public final class RolloutEngine {
    private final Decoder model;
    private final List<Long> eosIds;
    private final Function<long[], String> detokenize;

    public RolloutEngine(Decoder model, List<Long> eosIds, Function<long[], String> detokenize) {
        this.model = model;
        this.eosIds = eosIds;
        this.detokenize = detokenize;
    }

    private int maxRows = Integer.MAX_VALUE;
    private int peakRows; // the most sequences one chunk decoded at once
    private java.util.function.LongConsumer onFinished = n -> { };

    /** Called with the number of samples that finished, as they finish (progress display). */
    public RolloutEngine onFinished(java.util.function.LongConsumer listener) {
        this.onFinished = listener;
        return this;
    }
    /** rollout.prefill_gb's default: small next to a GPU's KV cache, one group for CPU test models. */
    public static final double DEFAULT_PREFILL_GB = 2;
    private long prefillBytes = (long) (DEFAULT_PREFILL_GB * (1L << 30));

    /**
     * Caps the activations one prefill pass may hold (bytes, estimated; rollout.prefill_gb): prompts
     * are prefilled in groups that fit ({@link #DEFAULT_PREFILL_GB} unless set). The estimate counts
     * attention scores in the model dtype plus their fp32 softmax and probabilities, the MLP's three
     * [T, I] activations and a few [T, E] ones per prompt.
     */
    public RolloutEngine withPrefillBytes(long bytes) {
        this.prefillBytes = bytes;
        return this;
    }

    /** The most sequences one chunk has decoded at once so far. */
    int peakRows() {
        return peakRows;
    }

    /** Prompts per prefill pass at prompt length t. */
    int prefillGroup(int prompts, int t) {
        var c = model.config;
        long b = model.dtype.getNumOfBytes();
        long perPrompt = (long) t * ((long) c.numHeads() * t * (2 * b + 4) + 3L * c.intermediateSize() * b + 8L * c.hiddenSize() * b);
        return (int) Math.max(1, Math.min(prompts, prefillBytes / Math.max(1, perPrompt)));
    }

    /**
     * Caps the sequences decoded at once (the KV cache is sized for them): larger requests run in chunks
     * of whole prompts, and a prompt whose samples alone outgrow the cap in pieces of its samples. Each
     * sample's random stream depends on its global index only, so chunking never changes the samples.
     */
    public RolloutEngine withMaxRows(int rows) {
        if (rows < 1) {
            throw new klrl.util.UserError("the KV-cache budget holds no sequence: raise rollout.kv_cache_gb");
        }
        this.maxRows = rows;
        return this;
    }

    /** KV-cache bytes one sequence of {@code tokens} tokens needs on the device holding the most layers. */
    public static long kvBytesPerSequence(Decoder model, int tokens) {
        var c = model.config;
        int layers = java.util.Arrays.stream(model.placement().layerCounts()).max().orElse(c.numLayers());
        return 2L * layers * c.numKvHeads() * c.headDim() * tokens * model.dtype.getNumOfBytes();
    }

    /** Sequences whose KV cache fits every device's budget (bytes); a budget too small for one is a user error. */
    public static int rowsThatFit(long bytesPerSequence, long[] budgetPerDevice) {
        long rows = Long.MAX_VALUE;
        for (long b : budgetPerDevice) {
            rows = Math.min(rows, b == Long.MAX_VALUE ? Long.MAX_VALUE : Math.max(0, b) / bytesPerSequence);
        }
        if (rows < 1) {
            throw new klrl.util.UserError("the KV cache of one sequence (" + String.format(java.util.Locale.ROOT, "%.3f", bytesPerSequence / (double) (1 << 20)) + " MiB per device)"
                    + " does not fit: raise rollout.kv_cache_gb or rollout.gpu_memory_utilization, or lower"
                    + " rollout.max_new_tokens / data.max_prompt_tokens (or rollout.prefill_gb, which the free-memory"
                    + " sizing leaves free)");
        }
        return (int) Math.min(Integer.MAX_VALUE, rows);
    }

    /** Generates {@code p.n()} samples per prompt; samples of prompt i are at [i*n, (i+1)*n). */
    public List<Sample> generate(List<long[]> prompts, SamplingParams p, NDManager parent) {
        return generate(prompts, 0, longest(prompts), p, parent);
    }

    /** The longest prompt's length. */
    public static int longest(List<long[]> prompts) {
        return prompts.stream().mapToInt(a -> a.length).max().orElse(0);
    }

    /**
     * The same for prompts [firstPrompt, firstPrompt + size) of a larger request (a data-parallel
     * replica's share), left-padded to {@code padTo} tokens, the whole request's longest prompt:
     * prompt indices, random streams and padding are the whole request's, so the samples and their
     * log-probs are the ones it gives on one device, bit for bit. (Padding hides no token, but a
     * different key count sums the same terms in other groups and changes the last bits.) Chunks of
     * {@link #withMaxRows} rows are padded the same way, so chunking changes nothing either.
     */
    public List<Sample> generate(List<long[]> prompts, int firstPrompt, int padTo, SamplingParams p, NDManager parent) {
        if (p.n() > maxRows) { // one prompt's samples outgrow the cache (an evaluation's pass@1024): in pieces, each its own rows' streams
            List<Sample> all = new ArrayList<>();
            for (int i = 0; i < prompts.size(); i++) {
                int off = firstPrompt + i;
                for (int j = 0; j < p.n(); j += maxRows) {
                    SamplingParams piece = new SamplingParams(p.maxNewTokens(), p.temperature(), p.topP(), p.topK(),
                            Math.min(maxRows, p.n() - j), p.stopStrings(), p.seed());
                    for (Sample s : generateChunk(prompts.subList(i, i + 1), padTo, piece, parent, streamSeed(p.seed(), (long) off * p.n() + j))) {
                        all.add(s.withPromptIndex(off));
                    }
                }
            }
            return all;
        }
        int perChunk = Math.max(1, maxRows / p.n());
        List<Sample> all = new ArrayList<>();
        for (int i = 0; i < prompts.size(); i += perChunk) {
            int off = firstPrompt + i;
            for (Sample s : generateChunk(prompts.subList(i, Math.min(prompts.size(), i + perChunk)), padTo, p, parent,
                    streamSeed(p.seed(), (long) off * p.n()))) {
                all.add(off == 0 ? s : s.withPromptIndex(s.promptIndex() + off));
            }
        }
        return all;
    }

    /**
     * The seed of the random stream of sample {@code row} (its global index in a request) under
     * sampling seed {@code seed}. Remote rollouts send it with each sample's request, so an engine that
     * seeds its sampler with it draws what this engine draws.
     */
    public static long streamSeed(long seed, long row) {
        return seed * 1_000_003L + row;
    }

    /** One sample of one prompt (p.n() must be 1) drawn from the random stream {@code streamSeed}. */
    public Sample generateOne(long[] prompt, SamplingParams p, long streamSeed, NDManager parent) {
        if (p.n() != 1) {
            throw new IllegalArgumentException("generateOne draws one sample; n = " + p.n());
        }
        return generateChunk(List.of(prompt), prompt.length, p, parent, streamSeed).get(0);
    }

    /** @param firstStream the random-stream seed of this call's first sample; the next ones follow it */
    private List<Sample> generateChunk(List<long[]> prompts, int padTo, SamplingParams p, NDManager parent, long firstStream) {
        peakRows = Math.max(peakRows, prompts.size() * p.n());
        Batch b = new Batch(prompts, padTo, p, firstStream);
        try (NDManager m = parent.newSubManager()) {
            Sampler sampler = new Sampler(p, model.config.vocabSize(), m);
            b.allocate(m);
            prefill(b, sampler, m);
            for (int cur = b.maxPrompt; ; cur++) { // cur: cache index of the next token
                int done = record(b);
                if (done == b.active) {
                    break;
                }
                // Drop finished rows once they are a quarter of the batch: copying the cache costs
                // about one decode step, so compacting every time a row ends would cost more than it saves.
                if (done > 0 && done * 4 >= b.active) {
                    compact(b, m);
                }
                decodeStep(b, sampler, cur, m);
            }
        }
        return b.samples();
    }

    /**
     * One rollout call's state: prompts left-padded to the longest (or further), n sample rows per prompt, each with
     * its own random stream; the rows still decoding ({@code rows[0, active)} → sample index) with
     * their last sampled token and its log-prob; what each sample has generated and why it stopped.
     */
    private final class Batch {
        final List<long[]> prompts;
        final SamplingParams p;
        final int n, size, maxPrompt;
        final boolean padded;
        final long[][] out;
        final float[][] lps;
        /** Log-probs under the truncated distribution each token was drawn from (top-k/top-p), or null without truncation. */
        final float[][] mus;
        final int[] len;
        final String[] reason;
        final SplittableRandom[] rngs;
        final long[] ids;    // one row per prompt: its n samples share the prefill
        final long[] valid;  // one row per sample
        final long[] nextPos;
        int[] rows;
        long[] tok;
        float[] lp, mu;
        int active;
        KvCache cache;
        NDArray keyValid, decodeMask;

        Batch(List<long[]> prompts, int padTo, SamplingParams p, long firstStream) {
            this.prompts = prompts;
            this.p = p;
            n = p.n();
            size = prompts.size() * n;
            int longest = longest(prompts);
            maxPrompt = Math.max(padTo, longest);
            if (longest == 0) {
                throw new IllegalArgumentException("empty prompt");
            }
            padded = prompts.stream().anyMatch(a -> a.length != maxPrompt);
            out = new long[size][p.maxNewTokens()];
            lps = new float[size][p.maxNewTokens()];
            mus = p.truncates() ? new float[size][p.maxNewTokens()] : null;
            len = new int[size];
            reason = new String[size];
            rngs = new SplittableRandom[size];
            ids = new long[prompts.size() * maxPrompt];
            valid = new long[size * maxPrompt];
            nextPos = new long[size];
            for (int r = 0; r < size; r++) {
                long[] pr = prompts.get(r / n);
                int pad = maxPrompt - pr.length;
                for (int j = 0; j < pr.length; j++) {
                    ids[(r / n) * maxPrompt + pad + j] = pr[j];
                    valid[r * maxPrompt + pad + j] = 1;
                }
                nextPos[r] = pr.length;
                rngs[r] = new SplittableRandom(firstStream + r);
            }
            rows = new int[size];
            for (int r = 0; r < size; r++) {
                rows[r] = r;
            }
            tok = new long[size];
            lp = new float[size];
            mu = new float[size];
            active = size;
        }

        /** The KV cache over the whole capacity and the additive key mask: prompt padding masked, generated columns open. */
        void allocate(NDManager m) {
            cache = new KvCache(model, m, size, maxPrompt + p.maxNewTokens());
            keyValid = m.create(valid, new Shape(size, maxPrompt));
            decodeMask = NDArrays.concat(new NDList(
                    keyValid.toType(model.dtype, false).sub(1).mul(model.dtype == DataType.FLOAT16 ? 30000f : 1e9f),
                    m.zeros(new Shape(size, p.maxNewTokens()), model.dtype)), 1);
        }

        List<Sample> samples() {
            List<Sample> samples = new ArrayList<>(size);
            for (int r = 0; r < size; r++) {
                samples.add(new Sample(r / n, prompts.get(r / n), Arrays.copyOf(out[r], len[r]),
                        Arrays.copyOf(lps[r], len[r]), reason[r], mus == null ? null : Arrays.copyOf(mus[r], len[r])));
            }
            return samples;
        }
    }

    /**
     * Prefills once per prompt, into the cache row of its first sample, in groups of prompts whose
     * activations fit the budget: a group holds its B·H·T² attention scores (and their fp32 softmax)
     * at once, which for a KV-cache-full batch of long prompts would outgrow the cache itself. Each
     * sample then draws its first token from its prompt's last-position logits with its own random
     * stream, and the prompt's cache row is copied to its other samples in place.
     */
    private void prefill(Batch b, Sampler sampler, NDManager m) {
        int np = b.prompts.size(), n = b.n, t = b.maxPrompt;
        int group = prefillGroup(np, t);
        for (int p0 = 0; p0 < np; p0 += group) {
            int p1 = Math.min(np, p0 + group);
            try (NDScope scope = new NDScope()) {
                NDArray idArr = m.create(Arrays.copyOfRange(b.ids, p0 * t, p1 * t), new Shape(p1 - p0, t));
                NDArray promptValid = JniUtils.slice((PtNDArray) b.keyValid, 0, (long) p0 * n, (long) p1 * n, n);
                NDArray pos = promptValid.cumSum(1).sub(1).maximum(0);
                NDArray mask = model.attentionMask(promptValid, 0, t);
                NDArray h = model.hidden(idArr, pos, mask, b.cache.rows(p0 * n, p1 * n, n), 0);
                NDArray last = model.logits(JniUtils.slice((PtNDArray) h, 1, t - 1, t, 1)).squeeze(1); // [P,V]
                NDArray perSample = n == 1 ? last : last.repeat(0, n);                                 // [P·n,V]
                NDArray[] sm = sampler.sample(perSample, Arrays.copyOfRange(b.rows, p0 * n, p1 * n), b.rngs);
                System.arraycopy(sm[0].toLongArray(), 0, b.tok, p0 * n, (p1 - p0) * n);
                System.arraycopy(sm[1].toFloatArray(), 0, b.lp, p0 * n, (p1 - p0) * n);
                if (sm[2] != null) {
                    System.arraycopy(sm[2].toFloatArray(), 0, b.mu, p0 * n, (p1 - p0) * n);
                }
            }
        }
        if (n > 1) {
            b.cache.copyFirstOfEach(n, t);
        }
    }

    /** Appends each active row's sampled token, marks rows that finished (eos, stop string, length); returns how many active rows are done. */
    private int record(Batch b) {
        if (Thread.currentThread().isInterrupted()) {
            // cancelled (the trainer is shutting down): stop at this token, so this thread's arrays are freed
            // here, by its own scopes, before anyone closes the weights it reads
            throw new java.util.concurrent.CancellationException("generation cancelled");
        }
        int done = 0, finishedNow = 0;
        for (int a = 0; a < b.active; a++) {
            int r = b.rows[a];
            if (b.reason[r] != null) {
                done++;
                continue;
            }
            b.out[r][b.len[r]] = b.tok[a];
            b.lps[r][b.len[r]] = b.lp[a];
            if (b.mus != null) {
                b.mus[r][b.len[r]] = b.mu[a];
            }
            b.len[r]++;
            b.nextPos[r]++;
            if (eosIds.contains(b.tok[a])) {
                b.reason[r] = "eos";
            } else if (!b.p.stopStrings().isEmpty() && endsInStop(b.out[r], b.len[r], b.p.stopStrings(), detokenize)) {
                b.reason[r] = "stop";
            } else if (b.len[r] == b.p.maxNewTokens()) {
                b.reason[r] = "length";
            }
            if (b.reason[r] != null) {
                done++;
                finishedNow++;
            }
        }
        if (finishedNow > 0) {
            onFinished.accept(finishedNow);
        }
        return done;
    }

    /** Keeps only the unfinished rows: their cache rows, mask rows and last tokens. */
    private void compact(Batch b, NDManager m) {
        int w = 0;
        long[] keepIdx = new long[b.active];
        int[] keep = new int[b.active];
        for (int a = 0; a < b.active; a++) {
            if (b.reason[b.rows[a]] == null) {
                keep[w] = b.rows[a];
                keepIdx[w] = a;
                w++;
            }
        }
        keepIdx = Arrays.copyOf(keepIdx, w);
        NDArray sel = m.create(keepIdx);
        b.cache.select(sel);
        NDArray dm = b.decodeMask.get(sel);
        b.decodeMask.close();
        b.decodeMask = dm;
        long[] newTok = new long[w];
        for (int i = 0; i < w; i++) {
            newTok[i] = b.tok[(int) keepIdx[i]];
        }
        b.tok = newTok;
        b.rows = Arrays.copyOf(keep, w);
        b.active = w;
        sel.close();
    }

    /** One decode step for the active rows: their last tokens at cache index {@code cur} → the next tokens. */
    private void decodeStep(Batch b, Sampler sampler, int cur, NDManager m) {
        try (NDScope scope = new NDScope()) {
            long[] posArr = new long[b.active];
            for (int a = 0; a < b.active; a++) {
                posArr[a] = b.nextPos[b.rows[a]] - 1;
            }
            NDArray idArr = m.create(b.tok, new Shape(b.active, 1));
            NDArray pos = m.create(posArr, new Shape(b.active, 1));
            // without prompt padding every cached key is visible: no mask to add
            NDArray mask = !b.padded ? null
                    : JniUtils.slice((PtNDArray) b.decodeMask, 1, 0, cur + 1, 1).reshape(b.active, 1, 1, 1, cur + 1);
            NDArray h = model.hidden(idArr, pos, mask, b.cache, cur);
            NDArray logits = model.logits(h).squeeze(1);
            NDArray[] s = sampler.sample(logits, b.rows, b.rngs);
            b.tok = s[0].toLongArray();
            b.lp = s[1].toFloatArray();
            if (s[2] != null) {
                b.mu = s[2].toFloatArray();
            }
        }
    }

    /**
     * Whether the text of {@code generated[0, len)} contains a stop string, checked each time a token
     * is added. Decoding the whole response every step would cost O(length²) per sample, on the
     * decode loop's thread. An occurrence that completes with the newest token lies in the last
     * {@code maxBytes} bytes of the text, so a tail window decides: counted in tokens (byte-level BPE
     * tokens are ≥ 1 byte; special ones may decode to nothing) and doubled until its text is long
     * enough. 9 bytes of slack cover a window that starts inside a multi-byte character (≤ 3 × U+FFFD)
     * or a decoder that drops a leading space. Earlier occurrences were found when they completed.
     */
    static boolean endsInStop(long[] generated, int len, List<String> stops, Function<long[], String> detokenize) {
        int maxBytes = 0;
        for (String s : stops) {
            maxBytes = Math.max(maxBytes, s.getBytes(java.nio.charset.StandardCharsets.UTF_8).length);
        }
        for (int w = maxBytes + 4; ; w *= 2) {
            int from = Math.max(0, len - w);
            String text = detokenize.apply(Arrays.copyOfRange(generated, from, len));
            if (from == 0 || text.getBytes(java.nio.charset.StandardCharsets.UTF_8).length >= maxBytes + 9) {
                for (String s : stops) {
                    if (text.contains(s)) {
                        return true;
                    }
                }
                return false;
            }
        }
    }

    /**
     * Picks one token per row from fp32 logits [B,V]: argmax when greedy, else inverse-CDF sampling
     * of softmax(logits/T) restricted to top-k and then to the top-p nucleus (HF's warper order and
     * rule: drop the least likely tokens whose cumulative mass stays ≤ 1−p). {@link #sample} returns
     * [tokens, logprobs of softmax(logits/T), logprobs of the truncated distribution drawn from] — the
     * last null when nothing is truncated (then it is the second).
     *
     * <p>Made once per rollout: the scalar operands live on the device for the whole decode loop.
     * DJL turns a Java number operand into a fresh one-element tensor on every call, and an NDIndex
     * string is parsed on every call; both cost several times the op itself at decoding's small
     * shapes, against a ready tensor or a direct slice.
     */
    static final class Sampler {
        private final SamplingParams p;
        private final long vocab;
        private final NDArray temperature, oneMinusP, lastIndex, huge;

        Sampler(SamplingParams p, long vocab, NDManager m) {
            this.p = p;
            this.vocab = vocab;
            temperature = m.create((float) p.temperature());
            oneMinusP = m.create((float) (1 - p.topP()));
            lastIndex = m.create(vocab - 1);
            huge = m.create(1e30f);
        }

        NDArray[] sample(NDArray logits, int[] rows, SplittableRandom[] rngs) {
            long b = logits.getShape().get(0), v = vocab;
            if (p.greedy()) {
                NDArray tok = logits.argMax(1);
                NDArray lp = JniUtils.logSoftmax((PtNDArray) logits, 1, DataType.FLOAT32)
                        .gather(tok.reshape(b, 1), 1).reshape(b);
                return new NDArray[] {tok, lp, null};
            }
            NDArray scaled = p.temperature() == 1 ? logits : logits.div(temperature); // x/1 is x exactly
            NDArray logp = JniUtils.logSoftmax((PtNDArray) scaled, 1, DataType.FLOAT32);
            NDArray filtered = scaled;
            if (p.topK() > 0 && p.topK() < v) {
                NDArray kth = JniUtils.slice((PtNDArray) JniUtils.topK((PtNDArray) scaled, p.topK(), 1, true, true).get(0),
                        1, p.topK() - 1, p.topK(), 1);
                filtered = filtered.sub(filtered.lt(kth).toType(DataType.FLOAT32, false).mul(huge));
            }
            NDArray probs = filtered.softmax(1);
            if (p.topP() < 1) {
                NDArray asc = probs.sort(1);
                // a boolean sum counts in int64 without materialising an int64 copy of [B,V]
                NDArray removed = asc.cumSum(1).lte(oneMinusP).sum(new int[] {1}, true).minimum(lastIndex);
                NDArray threshold = asc.gather(removed, 1);
                probs = probs.mul(probs.gte(threshold).toType(DataType.FLOAT32, false));
            }
            NDArray cdf = probs.cumSum(1);
            float[] u = new float[(int) b];
            for (int a = 0; a < b; a++) {
                u[a] = (float) rngs[rows[a]].nextDouble();
            }
            NDArray total = JniUtils.slice((PtNDArray) cdf, 1, v - 1, v, 1);
            NDArray target = logits.getManager().create(u).reshape(b, 1).mul(total);
            // The first index whose cdf exceeds the target; it always has non-zero probability.
            NDArray tok = cdf.lte(target).sum(new int[] {1}).minimum(lastIndex);
            NDArray lp = logp.gather(tok.reshape(b, 1), 1).reshape(b);
            // μ(y) = kept mass of y ÷ the kept total: what the token was really drawn from
            NDArray mu = !p.truncates() ? null : probs.gather(tok.reshape(b, 1), 1).reshape(b).log().sub(total.reshape(b).log());
            return new NDArray[] {tok, lp, mu};
        }
    }
}
