package klrl.model;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDArrays;
import ai.djl.ndarray.NDList;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.index.NDIndex;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import ai.djl.pytorch.engine.PtNDArray;
import ai.djl.pytorch.jni.JniUtils;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;
import klrl.util.UserError;

/**
 * The Qwen2 / Llama-3 decoder, following transformers' modeling_qwen2.py / modeling_llama.py.
 * Shapes: B batch, T new tokens, S keys (cache + new), H query heads, K kv heads, G = H/K, D head dim,
 * E hidden size, I intermediate size, V vocab.
 *
 * <p>Parameters keep HF names and layouts ([out, in] linear weights), so loading, saving, LoRA and
 * the optimizer all speak one vocabulary. Every op puts an activation first so results land in the
 * caller's NDManager, not the parameters'.
 */
public final class Decoder implements AutoCloseable {

    /** A linear projection by HF name: weight [out, in], optional bias, optional LoRA adapter. */
    final class Proj {
        final String name;
        final NDArray w, b;
        Lora lora;

        Proj(String name) {
            this.name = name;
            this.w = params.get(name + ".weight");
            this.b = params.get(name + ".bias");
        }

        NDArray apply(NDArray x) {
            NDArray y = linear(x, w, b);
            return lora != null && adaptersOn() ? y.add(lora.apply(x, training)) : y;
        }
    }

    /** One decoder layer's parameters. */
    record Layer(NDArray inNorm, Proj q, Proj k, Proj v, Proj o, NDArray postNorm, Proj gate, Proj up, Proj down) {}

    public final ModelConfig config;
    public final DataType dtype;
    private final NDManager manager;
    private final Placement placement;
    private final Map<ai.djl.Device, NDManager> managers = new LinkedHashMap<>();
    private final Map<String, NDArray> params;
    private final Layer[] layers;
    private final NDArray embed, finalNorm, lmHead;
    private final float[] invFreq;
    /**
     * Threads that turned the adapters off ({@link #adaptersOff}): per thread, so a pipeline stage can
     * run the reference (the base) while another stage runs the policy through the same layers.
     */
    private final ThreadLocal<Boolean> adaptersDisabled = ThreadLocal.withInitial(() -> false);
    private boolean training = false;

    public Decoder(ModelConfig config, Map<String, NDArray> params, NDManager manager, DataType dtype) {
        this(config, params, manager, dtype, Placement.single(manager.getDevice(), config.numLayers()));
    }

    /** A decoder whose parameters already live where {@code placement} says. */
    public Decoder(ModelConfig config, Map<String, NDArray> params, NDManager manager, DataType dtype, Placement placement) {
        this.config = config;
        this.params = params;
        this.manager = manager;
        this.dtype = dtype;
        this.placement = placement;
        for (ai.djl.Device d : placement.devices()) {
            managers.computeIfAbsent(d, x -> x.equals(manager.getDevice()) ? manager : manager.newSubManager(x));
        }
        this.layers = new Layer[config.numLayers()];
        for (int i = 0; i < layers.length; i++) {
            String p = "model.layers." + i + ".";
            layers[i] = new Layer(params.get(p + "input_layernorm.weight"),
                    new Proj(p + "self_attn.q_proj"), new Proj(p + "self_attn.k_proj"), new Proj(p + "self_attn.v_proj"),
                    new Proj(p + "self_attn.o_proj"), params.get(p + "post_attention_layernorm.weight"),
                    new Proj(p + "mlp.gate_proj"), new Proj(p + "mlp.up_proj"), new Proj(p + "mlp.down_proj"));
        }
        this.embed = params.get("model.embed_tokens.weight");
        this.finalNorm = params.get("model.norm.weight");
        this.lmHead = config.tieWordEmbeddings() ? embed : params.get("lm_head.weight");
        this.invFreq = Rope.inverseFrequencies(config);
    }

    /** Loads a HF model folder (config.json + safetensors), checking every tensor name and shape. */
    public static Decoder load(Path dir, NDManager manager, DataType dtype) {
        return load(dir, manager, dtype, null);
    }

    /** The same, each tensor loaded straight onto its device of {@code placement} (null: the manager's device). */
    public static Decoder load(Path dir, NDManager manager, DataType dtype, Placement placement) {
        ModelConfig cfg = ModelConfig.load(dir);
        Placement place = placement != null ? placement : Placement.single(manager.getDevice(), cfg.numLayers());
        Map<String, SafeTensors.Entry> index = SafeTensors.index(dir);
        Map<String, long[]> expected = cfg.expectedTensors();
        for (var e : expected.entrySet()) {
            SafeTensors.Entry en = index.get(e.getKey());
            if (en == null) {
                throw new UserError(dir + ": tensor '" + e.getKey() + "' is missing from the checkpoint");
            }
            if (!java.util.Arrays.equals(en.shape(), e.getValue())) {
                throw new UserError(en.file() + ": tensor '" + e.getKey() + "' has shape "
                        + java.util.Arrays.toString(en.shape()) + "; config.json implies "
                        + java.util.Arrays.toString(e.getValue()));
            }
        }
        for (String name : index.keySet()) {
            boolean tolerated = name.endsWith("rotary_emb.inv_freq")
                    || (cfg.tieWordEmbeddings() && name.equals("lm_head.weight"));
            if (!expected.containsKey(name) && !tolerated) {
                throw new UserError(index.get(name).file() + ": unexpected tensor '" + name
                        + "' (not part of a " + cfg.modelType() + " model with this config.json)");
            }
        }
        Map<String, NDArray> params = new LinkedHashMap<>();
        Map<ai.djl.Device, NDManager> on = new LinkedHashMap<>();
        for (String name : expected.keySet()) {
            ai.djl.Device d = deviceOf(name, place);
            NDArray a = SafeTensors.load(index.get(name), on.computeIfAbsent(d, x -> manager.newSubManager(x)), dtype);
            if (!d.isGpu() && (name.endsWith("_proj.weight") || name.equals("lm_head.weight"))) {
                a = columnMajor(a);
            }
            a.setName(name);
            params.put(name, a);
        }
        return new Decoder(cfg, params, manager, dtype, place);
    }

    /**
     * The same [out, in] matrix stored column-major, i.e. in the memory of its transpose. x·Wᵀ then
     * reaches MKL as a GEMM with no transposed operand, which on CPU is much faster for the few rows
     * of decoding (numbers in src/site/markdown/benchmarks.md).
     * Shape, names, values, gradients and saved files are unchanged: DJL reads tensors out in
     * row-major order. Values written back go through an indexed copy (SafeTensors.copyInto), which
     * keeps this layout; set(ByteBuffer) keeps the values but not the layout. Only on CPU, where it
     * was measured.
     */
    static NDArray columnMajor(NDArray w) {
        NDArray t = w.transpose();
        NDArray flat = t.flatten(); // a copy: a transposed tensor cannot be flattened in place
        NDArray packed = flat.reshape(t.getShape());
        NDArray out = packed.transpose();
        for (NDArray a : new NDArray[] {flat, packed, t, w}) {
            a.close(); // handles only: out's view keeps the copied storage alive
        }
        return out;
    }

    /** The device of a parameter by HF name. */
    public static ai.djl.Device deviceOf(String name, Placement p) {
        if (name.startsWith("model.layers.")) {
            return p.layer(Integer.parseInt(name.substring(13, name.indexOf('.', 13))));
        }
        return name.startsWith("model.embed_tokens.") ? p.embedding() : p.output();
    }

    public Placement placement() {
        return placement;
    }

    /**
     * Adds LoRA adapters (rank r, scale α/r) to every projection whose name ends with one of
     * {@code targets} (e.g. q_proj, v_proj) and returns them by weight name; base weights stay as they are.
     */
    public Map<String, Lora> addAdapters(java.util.List<String> targets, int rank, double alpha, double dropout, long seed) {
        Map<String, Lora> out = new LinkedHashMap<>();
        java.util.SplittableRandom rng = new java.util.SplittableRandom(seed);
        for (int li = 0; li < layers.length; li++) {
            Layer L = layers[li];
            for (Proj p : projections(L)) {
                String shortName = p.name.substring(p.name.lastIndexOf('.') + 1);
                if (targets.contains(shortName)) {
                    long[] shp = p.w.getShape().getShape();
                    p.lora = Lora.init(managers.get(placement.layer(li)), shp[0], shp[1], rank, alpha, dropout, dtype, rng);
                    out.put(p.name + ".weight", p.lora);
                }
            }
        }
        if (out.isEmpty()) {
            throw new UserError("lora.target_modules " + targets + " matched no projection; expected names such as"
                    + " q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj");
        }
        return out;
    }

    /** The LoRA adapters by weight name, in the order {@link #addAdapters} made them (empty without). */
    public Map<String, Lora> adapters() {
        Map<String, Lora> out = new LinkedHashMap<>();
        for (Layer L : layers) {
            for (Proj p : projections(L)) {
                if (p.lora != null) {
                    out.put(p.name + ".weight", p.lora);
                }
            }
        }
        return out;
    }

    /**
     * A copy of this single-device decoder, its LoRA adapters included, on the device of {@code m}
     * (data-parallel replicas): tensors go device to device, nothing is read from disk again. With
     * {@code copyWeights} false, weights already on that device are shared rather than copied (only for
     * frozen ones: every forward only reads them); adapters are always copied, since they are trained.
     * A decoder placed over several devices is gathered onto the one device (rollout.devices).
     */
    public Decoder replica(NDManager m, boolean copyWeights) {
        ai.djl.Device d = m.getDevice();
        Map<String, NDArray> ps = new LinkedHashMap<>();
        params.forEach((k, v) -> ps.put(k, copyWeights || !v.getDevice().equals(d) ? copy(v, m) : v));
        Decoder r = new Decoder(config, ps, m, dtype, Placement.single(d, layers.length));
        for (int li = 0; li < layers.length; li++) {
            Proj[] from = projections(layers[li]), to = projections(r.layers[li]);
            for (int j = 0; j < from.length; j++) {
                Lora l = from[j].lora;
                to[j].lora = l == null ? null : new Lora(copy(l.a, m), copy(l.b, m), l.scale, l.dropout);
            }
        }
        return r.attention(mode).headChunk(headChunk);
    }

    private static Proj[] projections(Layer L) {
        return new Proj[] {L.q, L.k, L.v, L.o, L.gate, L.up, L.down};
    }

    /** A copy of {@code v} in {@code m} on m's device; its memory layout (e.g. {@link #columnMajor}) is kept. */
    public static NDArray copy(NDArray v, NDManager m) {
        NDArray c = v.getDevice().equals(m.getDevice()) ? v.duplicate() : v.toDevice(m.getDevice(), true);
        c.attach(m);
        return c;
    }

    /**
     * Turns the LoRA adapters off until the returned scope closes: the model is then the frozen base,
     * the reference policy at no extra memory. A model without adapters is unaffected. It applies to
     * the calling thread only.
     */
    public AdaptersOff adaptersOff() {
        adaptersDisabled.set(true);
        return new AdaptersOff();
    }

    /** The scope of {@link #adaptersOff}; closing it turns the adapters back on, also when the pass threw. */
    public final class AdaptersOff implements AutoCloseable {
        private AdaptersOff() {}

        @Override
        public void close() {
            adaptersDisabled.set(false);
        }
    }

    /** Whether the adapters apply in the calling thread. */
    private boolean adaptersOn() {
        return !adaptersDisabled.get();
    }

    /** Training mode turns on LoRA dropout. */
    public void setTraining(boolean on) {
        training = on;
    }

    /** Parameters by HF name, in checkpoint order (the optimizer and checkpoints use this view). */
    public Map<String, NDArray> parameters() {
        return params;
    }

    /**
     * Runs the decoder over T new tokens per row and returns the final-normed hidden states [B,T,E].
     *
     * @param ids       [B,T] int64 token ids
     * @param positions [B,T] int64 rotary positions (cumsum of the attention mask − 1 for padded rows)
     * @param mask      [B,1,1,T,S] additive attention mask (0 or a large negative), see {@link #attentionMask};
     *                  null when every key is visible (one new token per row, no padding)
     * @param cache     KV cache to read and write at [start, start+T), or null for a cache-free forward
     */
    public NDArray hidden(NDArray ids, NDArray positions, NDArray mask, KvCache cache, int start) {
        return hidden(ids, pass(ids, positions, mask, cache, start));
    }

    /** The same, with the pass's shared tensors already made. */
    public NDArray hidden(NDArray ids, Pass p) {
        if (placement.stages() > 1 && JniUtils.isGradMode() && recordsTrainable()) {
            // moving activations between devices cuts the graph: earlier layers would get no gradient
            throw new IllegalStateException("a multi-device decoder is differentiated through StagedBackward only");
        }
        return finalNorm(toOutput(layers(0, layers.length, embed(ids), p)), p);
    }

    /**
     * Layers [from, to) over x without a graph kept for later: each layer's input is closed once the next
     * has it (x included; a recorded graph holds its own references), so a pass holds one activation.
     */
    public NDArray layers(int from, int to, NDArray x, Pass p) {
        for (int li = from; li < to; li++) {
            NDArray in = toLayer(li, x), out = layer(li, in, p);
            if (in != x) {
                in.close();
            }
            x.close();
            x = out;
        }
        return x;
    }

    private boolean recordsTrainable() {
        if (embed.hasGradient()) {
            return true;
        }
        for (Layer L : layers) {
            for (Proj p : projections(L)) {
                if (p.lora != null) {
                    return adaptersOn();
                }
            }
        }
        return false;
    }

    /**
     * What every layer of one forward pass shares: shapes, rotary tables, mask, cache, constants;
     * {@link #on} gives it on another device, made once per pass and device.
     */
    public record Pass(long b, long t, NDArray cos, NDArray sin, NDArray rot, NDArray scale, NDArray eps,
                       NDArray width, NDArray mask, KvCache cache, int start, Map<ai.djl.Device, Pass> copies, boolean causal) {}

    /**
     * Pass {@code p} on device {@code d}: its own tensors (rotary rows, mask) copied there once, in the
     * pass's manager; the constants this decoder keeps per device, never copied (a copy of a kept
     * constant would belong to no scope that closes).
     */
    private Pass on(Pass p, ai.djl.Device d) {
        if (d.equals(p.cos().getDevice())) {
            return p;
        }
        return p.copies().computeIfAbsent(d, x -> {
            Consts c;
            synchronized (consts) {
                c = consts(x, 0);
            }
            return new Pass(p.b(), p.t(), p.cos().toDevice(x, false), p.sin().toDevice(x, false), c.rot, c.scale, c.eps, c.width,
                    p.mask() == null ? null : p.mask().toDevice(x, false), p.cache(), p.start(), p.copies(), p.causal());
        });
    }

    /** Moves the activation entering layer l to that layer's device (a no-op on one device). */
    public NDArray toLayer(int l, NDArray x) {
        return x.toDevice(placement.layer(l), false);
    }

    /** Moves the last layer's output to the device of the final norm and lm_head. */
    public NDArray toOutput(NDArray x) {
        return x.toDevice(placement.output(), false);
    }

    /** Builds a pass's shared tensors once, not per layer. Positions must be < start + T (they count real tokens). */
    public Pass pass(NDArray ids, NDArray positions, NDArray mask, KvCache cache, int start) {
        long b = ids.getShape().get(0), t = ids.getShape().get(1);
        NDArray cos, sin;
        Consts c;
        synchronized (consts) { // pipeline stages and a head's reference pass make passes from several threads
            c = consts(positions.getDevice(), (int) (start + t));
            // Rotary cos/sin [B,1,T,D]: rows of the per-position tables (computed in fp32 as HF does)
            cos = JniUtils.embedding((PtNDArray) positions, (PtNDArray) c.cos, false).expandDims(1);
            sin = JniUtils.embedding((PtNDArray) positions, (PtNDArray) c.sin, false).expandDims(1);
        }
        return new Pass(b, t, cos, sin, c.rot, c.scale, c.eps, c.width, mask, cache, start,
                new java.util.concurrent.ConcurrentHashMap<>(), false);
    }

    /**
     * A full pass over right-padded rows (each row's real tokens from column 0, padding only after
     * them) with fused attention ({@link #attention}): causal attention alone is exact for every real
     * token — none attends to a later position, so none sees padding — and no [B,1,T,S] mask is built.
     * Padding positions compute values nobody reads.
     */
    public Pass causalPass(NDArray ids, NDArray positions) {
        if (sdpa == null) {
            throw new IllegalStateException("a causal pass needs fused attention (model.attention: sdpa, or auto)");
        }
        Pass p = pass(ids, positions, null, null, 0);
        return new Pass(p.b(), p.t(), p.cos(), p.sin(), p.rot(), p.scale(), p.eps(), p.width(), null, null, 0, p.copies(), true);
    }

    /**
     * libtorch's fused attention for the passes {@link #mode} runs fused, or null until one does (auto
     * over short rows never loads it): the matmul/softmax path.
     */
    private volatile Sdpa sdpa;
    /** model.attention: which full passes run fused ({@link Attention#fused}). */
    private String mode = "eager";

    /**
     * model.attention: "sdpa" (fused, memory linear in the sequence), "eager" (materialised scores) or
     * "auto" (fused for passes of at least {@link Attention#AUTO_MIN_TOKENS} positions, eager below).
     */
    public Decoder attention(String mode) {
        if (!Attention.MODES.contains(mode)) {
            throw new IllegalArgumentException("attention mode " + mode + ", not one of " + Attention.MODES);
        }
        if (mode.equals("sdpa")) {
            fused();
        } else if (mode.equals("eager") && sdpa != null) {
            sdpa.close();
            sdpa = null;
        }
        this.mode = mode;
        return this;
    }

    /** model.head_chunk_tokens: full passes compute the output head this many response tokens at a time (0: all at once). */
    private int headChunk = DEFAULT_HEAD_CHUNK;

    /** The chunk a full pass's output head takes when the config says nothing (model.head_chunk_tokens). */
    public static final int DEFAULT_HEAD_CHUNK = 512;

    /** Sets model.head_chunk_tokens: response tokens per chunk of the output head, 0 for the whole micro-batch at once. */
    public Decoder headChunk(int tokens) {
        if (tokens < 0) {
            throw new IllegalArgumentException("head chunk of " + tokens + " tokens");
        }
        this.headChunk = tokens;
        return this;
    }

    /** Response tokens per chunk of the output head in a full pass (0: all at once). */
    public int headChunkTokens() {
        return headChunk;
    }

    /** The model.attention mode this decoder runs. */
    public String attentionMode() {
        return mode;
    }

    /** Fused attention calls made in this process (every decoder): what a check reads to see that the fused path ran. */
    public static long fusedAttentionCalls() {
        return Sdpa.CALLS.get();
    }

    /**
     * Whether a full pass of {@code t} positions (its padded length) uses fused attention: over
     * right-padded rows a causal pass, in a prefill the left padding's mask.
     */
    public boolean fusedAttention(long t) {
        if (!Attention.fused(mode, t)) {
            return false;
        }
        fused();
        return true;
    }

    /** The fused-attention modules, loaded by the first pass that runs them (pipeline stages may ask at once). */
    private synchronized Sdpa fused() {
        if (sdpa == null) {
            sdpa = new Sdpa((ai.djl.pytorch.engine.PtNDManager) manager);
        }
        return sdpa;
    }

    /**
     * Constants every forward uses, made once per device: at decode time each JNI call costs
     * microseconds, and building rotary tables per step cost more than a layer's worth of ops.
     */
    private static final class Consts {
        NDArray cos, sin; // [L,D] in the compute dtype, L grown on demand
        int len;
        NDArray rot, scale, eps, width; // width: the hidden size as an fp32 scalar (RMSNorm's mean)
    }

    private final Map<ai.djl.Device, Consts> consts = new java.util.HashMap<>();

    private Consts consts(ai.djl.Device d, int positions) {
        NDManager m = managers.computeIfAbsent(d, x -> manager.newSubManager(x));
        Consts c = consts.computeIfAbsent(d, x -> {
            Consts n = new Consts();
            n.scale = m.create(1.0 / Math.sqrt(config.headDim())).toType(dtype, false);
            n.eps = m.create((float) config.rmsNormEps());
            n.width = m.create((float) config.hiddenSize());
            n.rot = Rope.rotation(n.scale, config.headDim());
            ai.djl.ndarray.NDScope.unregister(n.scale, n.eps, n.width, n.rot); // they outlive the caller's scope
            return n;
        });
        if (positions > c.len) {
            int len = Math.max(256, Integer.highestOneBit(positions - 1) * 2);
            NDArray[] cs = Rope.table(m, len, invFreq, dtype);
            if (c.cos != null) {
                c.cos.close();
                c.sin.close();
            }
            ai.djl.ndarray.NDScope.unregister(cs);
            c.cos = cs[0];
            c.sin = cs[1];
            c.len = len;
        }
        return c;
    }

    /**
     * Token embedding: [B,T] → rows [B·T,E], on the embedding's device. The layers work on rows:
     * torch's linear fuses the bias into the GEMM (addmm) only for 2-D inputs, and a 3-D one also
     * costs a reshape and a view around every GEMM.
     */
    /** Whether the token embedding records gradients: it trains with full fine-tuning and is frozen under LoRA. */
    public boolean embeddingTrains() {
        return embed.hasGradient(); // a leaf: libtorch's requires_grad (an op's result would report false)
    }

    public NDArray embed(NDArray ids) {
        return embed(ids, embed);
    }

    /**
     * The lookup in {@code weight}, the embedding matrix or an alias of it ({@link #embeddingAlias}) whose
     * gradient accumulates apart from the matrix's own.
     */
    public NDArray embed(NDArray ids, NDArray weight) {
        NDArray on = ids.toDevice(weight.getDevice(), false).reshape(-1);
        return Casts.to(JniUtils.embedding((PtNDArray) on, (PtNDArray) weight, false), dtype);
    }

    /**
     * The embedding matrix's storage as a separate leaf that records its own gradient: a pipeline's first
     * stage accumulates the lookup's gradients there in micro-batch order while the last stage adds
     * lm_head's into the (tied) matrix; {@link #addEmbeddingGradient} joins them in one fixed order.
     */
    public NDArray embeddingAlias() {
        NDArray a = embed.stopGradient();
        a.setRequiresGradient(true);
        return a;
    }

    /**
     * Adds an alias's accumulated gradient to the embedding matrix's own, as autograd accumulates (the
     * gradient is taken as it is while the matrix has none yet, added to it otherwise).
     */
    public void addEmbeddingGradient(NDArray alias) {
        try (klrl.util.Grad g = klrl.util.Grad.record(); NDManager m = embed.getManager().newSubManager()) {
            NDArray view = embed.reshape(embed.getShape()); // an identity view whose backward reaches the matrix
            view.attach(m);
            NDArray grad = alias.getGradient();
            g.backward(view, grad);
            grad.close();
        }
    }

    public int numLayers() {
        return layers.length;
    }

    /** One decoder layer: rows x [B·T,E] → [B·T,E], x already on the layer's device ({@link #toLayer}). */
    public NDArray layer(int li, NDArray x, Pass pass) {
        Pass p = on(pass, placement.layer(li)); // out here: later layers on this device reuse the copy
        // Its intermediates go when it returns (Nd.scoped): under the caller's scope alone every
        // layer's activations would stay alive until the pass ended, so a prefill would hold its
        // attention scores once per layer and checkpointed stages every recomputed layer's activations.
        return klrl.util.Nd.scoped(() -> layerOps(li, x, p));
    }

    private NDArray layerOps(int li, NDArray x, Pass p) {
        long b = p.b(), t = p.t();
        int h = config.numHeads(), k = config.numKvHeads(), g = config.groups(), d = config.headDim();
        boolean one = t == 1; // decoding: [B,1,H,D] and [B,H,1,D] are the same memory, no transposes
        Layer L = layers[li];
        // Attention block: pre-norm, q/k/v projections (+bias for Qwen2)
        NDArray xn = rmsNorm(x, L.inNorm, p);
        NDArray q = heads(L.q.apply(xn), b, t, h, d, one);                                      // [B,H,T,D]
        NDArray kk = heads(L.k.apply(xn), b, t, k, d, one);                                     // [B,K,T,D]
        NDArray v = heads(L.v.apply(xn), b, t, k, d, one);                                      // [B,K,T,D]
        // Rotary embedding, HF rotate-half convention
        q = Rope.apply(q, p.cos(), p.sin(), p.rot());
        kk = Rope.apply(kk, p.cos(), p.sin(), p.rot());
        // KV cache: write the new keys/values in place, attend over everything so far
        long s = t;
        NDArray kt;                                                                             // [B,K,D,S]
        if (p.cache() != null) {
            p.cache().write(li, p.start(), kk, v);
            if (p.start() == 0 && t > 1 && p.mask() != null && fusedAttention(t)) {
                // a prefill attends over its own keys alone: fused, with the left padding's mask
                return afterFused(x, sdpa.masked(q, repeatKv(kk, b, t, g), repeatKv(v, b, t, g), p.mask().reshape(b, 1, t, t)), L, p);
            }
            s = p.start() + t;
            kt = p.cache().keysTransposed(li, (int) s);
            v = p.cache().values(li, (int) s);
        } else {
            kt = kk.transpose(0, 1, 3, 2);
        }
        if (p.causal() && p.cache() == null) {
            // Fused causal attention. K/V repeated to the query heads first (HF's repeat_kv order: head kv·G + j):
            // O(T) memory, where SDPA's own GQA would fall back to its materialising math kernel
            return afterFused(x, sdpa.causal(q, repeatKv(kk, b, t, g), repeatKv(v, b, t, g)), L, p);
        }
        // GQA without repeating K/V: fold each kv head's G query heads into its row block
        // (scaling q rather than the scores: same product, a pass over G·T·D values instead of G·T·S)
        NDArray qg = q.mul(p.scale()).reshape(b, k, g * t, d);                                  // [B,K,G*T,D]
        NDArray scores = qg.matMul(kt);                                                         // [B,K,G*T,S]
        if (p.mask() != null) {
            try (NDArray byQuery = scores.reshape(b, k, g, t, s)) {                             // [B,K,G,T,S] view
                byQuery.addi(p.mask()); // in place: the matmul's backward needs its inputs, not its output
            }
        }
        NDArray probs32 = JniUtils.softmax((PtNDArray) scores, 3, DataType.FLOAT32);
        NDArray probs = Casts.to(probs32, dtype);
        // The B·H·T² tensors go now, not when the layer ends (softmax's backward keeps its output itself)
        scores.close();
        if (probs != probs32) {
            probs32.close();
        }
        NDArray att = probs.matMul(v);                                                          // [B,K,G*T,D]
        att = one ? att.reshape(b, (long) h * d)                                                // [B·T,H*D]
                : att.reshape(b, h, t, d).transpose(0, 2, 1, 3).reshape(b * t, (long) h * d);
        x = x.add(L.o.apply(att));
        return mlp(x, L, p);
    }

    /** Fused attention's heads [B,H,T,D] → rows [B·T,H·D], through o_proj onto the residual, then the MLP block. */
    private NDArray afterFused(NDArray x, NDArray att, Layer L, Pass p) {
        long b = p.b(), t = p.t(), hd = (long) config.numHeads() * config.headDim();
        return mlp(x.add(L.o.apply(att.transpose(0, 2, 1, 3).reshape(b * t, hd))), L, p);
    }

    /** [B,K,T,D] → [B,K·G,T,D], each kv head repeated for its G query heads (head kv·G + j, HF's repeat_kv). */
    private static NDArray repeatKv(NDArray x, long b, long t, int g) {
        if (g == 1) {
            return x;
        }
        long k = x.getShape().get(1), d = x.getShape().get(3);
        return x.expandDims(2).repeat(2, g).reshape(b, k * g, t, d);
    }

    /** MLP block: pre-norm, SwiGLU, residual. */
    private NDArray mlp(NDArray x, Layer L, Pass p) {
        NDArray xm = rmsNorm(x, L.postNorm, p);
        NDArray gate = L.gate.apply(xm);
        NDArray act = gate.mul(ai.djl.nn.Activation.sigmoid(gate)).mul(L.up.apply(xm));
        return x.add(L.down.apply(act));
    }

    /** The final RMSNorm: rows [B·T,E] → [B,T,E]. */
    public NDArray finalNorm(NDArray x, Pass p) {
        Pass o = on(p, placement.output());
        return rmsNorm(x, finalNorm, o).reshape(o.b(), o.t(), config.hiddenSize());
    }

    /** Logits [T,V] (fp32) of one unpadded sequence, every position: the plain full forward. */
    public NDArray logits(NDManager m, long[] ids) {
        return logits(hidden(m, ids)).reshape(ids.length, config.vocabSize());
    }

    /** Final hidden states [T,E] of one unpadded sequence, every position. */
    public NDArray hidden(NDManager m, long[] ids) {
        int t = ids.length;
        NDArray valid = m.ones(new Shape(1, t), DataType.INT64);
        return hidden(m.create(ids, new Shape(1, t)), m.arange(0, t, 1, DataType.INT64).reshape(1, t),
                attentionMask(valid, 0, t), null, 0).reshape(t, config.hiddenSize());
    }

    /** Logits [B,T,V] in fp32 from hidden states (HF casts lm_head's output to fp32 too). */
    public NDArray logits(NDArray hidden) {
        return Casts.to(linear(hidden, lmHead, null), DataType.FLOAT32);
    }

    /**
     * Logits in fp32 without a graph, the model's own lm_head output (fp16) freed once cast: for passes
     * that keep no graph ({@link #logits} keeps the cast autograd can follow, and with it both tensors).
     */
    public NDArray logitsNoGraph(NDArray hidden) {
        NDArray raw = linear(hidden, lmHead, null);
        if (raw.getDataType() == DataType.FLOAT32) {
            return raw;
        }
        NDArray out = raw.toType(DataType.FLOAT32, false);
        raw.close();
        return out;
    }

    /** Rows [B·T,N·D] → [B,N,T,D]. */
    private static NDArray heads(NDArray x, long b, long t, int n, int d, boolean one) {
        return one ? x.reshape(b, n, 1, d) : x.reshape(b, t, n, d).transpose(0, 2, 1, 3);
    }

    /**
     * HF's RMSNorm: normalise in fp32, cast back, then scale by the weight. The mean is a sum divided
     * by a ready fp32 scalar, which is what torch's mean computes on CPU, without its per-call conversion of
     * the divisor into a tensor (a third of the norm's time at decode shapes).
     */
    NDArray rmsNorm(NDArray x, NDArray w, Pass p) {
        NDArray xf = Casts.to(x, DataType.FLOAT32);
        int last = xf.getShape().dimension() - 1;
        NDArray inv = xf.mul(xf).sum(new int[] {last}, true).div(p.width()).add(p.eps()).sqrt(); // fp32 scalars
        return Casts.to(xf.div(inv), dtype).mul(w);
    }

    /** y = x·Wᵀ + b (torch.nn.functional.linear); also used by heads outside the decoder. */
    public static NDArray linear(NDArray x, NDArray w, NDArray bias) {
        return JniUtils.linear((PtNDArray) x, (PtNDArray) w, (PtNDArray) bias);
    }

    /**
     * The additive mask [B,1,1,T,S]: query i (cache index start+i) sees key j iff j ≤ start+i and key j
     * is not padding. Masked entries get a large finite negative (not −inf) so a fully padded query
     * row gives a uniform, finite softmax instead of NaN, as HF does with finfo.min.
     *
     * @param keyValid [B,S] boolean/int, 1 for real tokens over the whole key range
     */
    public NDArray attentionMask(NDArray keyValid, int start, int t) {
        NDManager m = keyValid.getManager();
        long s = keyValid.getShape().get(1), b = keyValid.getShape().get(0);
        NDArray kpos = m.arange(0, (int) s, 1, DataType.INT64).reshape(1, 1, s);
        NDArray qpos = m.arange(start, start + t, 1, DataType.INT64).reshape(1, t, 1);
        NDArray allowed = kpos.lte(qpos).logicalAnd(keyValid.toType(DataType.BOOLEAN, false).reshape(b, 1, s));
        float neg = dtype == DataType.FLOAT16 ? -30000f : -1e9f;
        return allowed.toType(dtype, false).sub(1).mul(-neg).reshape(b, 1, 1, t, s);
    }

    @Override
    public void close() {
        params.values().forEach(NDArray::close);
        if (sdpa != null) {
            sdpa.close();
        }
    }
}
