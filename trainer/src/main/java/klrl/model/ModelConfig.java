package klrl.model;

import com.fasterxml.jackson.databind.JsonNode;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import klrl.util.Json;
import klrl.util.UserError;

/**
 * The decoder shape read from a Hugging Face {@code config.json} (Qwen2/Qwen2.5 and Llama 3/3.1).
 * Field names follow transformers' so that errors name the key the user sees in the file.
 */
public record ModelConfig(
        String modelType,
        int vocabSize,
        int hiddenSize,
        int intermediateSize,
        int numLayers,
        int numHeads,
        int numKvHeads,
        int headDim,
        double rmsNormEps,
        double ropeTheta,
        RopeScaling ropeScaling,
        boolean tieWordEmbeddings,
        boolean qkvBias,
        boolean oBias,
        boolean mlpBias,
        int maxPositionEmbeddings,
        List<Integer> eosTokenIds) {

    /** Llama-3 frequency-dependent rope scaling (rope_type "llama3"). */
    public record RopeScaling(double factor, double lowFreqFactor, double highFreqFactor, int originalMaxPositions) {}

    public ModelConfig {
        if (numHeads % numKvHeads != 0) {
            throw new UserError("config.json: num_attention_heads (" + numHeads
                    + ") must be a multiple of num_key_value_heads (" + numKvHeads + ")");
        }
        if (headDim % 2 != 0) {
            throw new UserError("config.json: head_dim must be even for rotary embeddings, got " + headDim);
        }
        eosTokenIds = List.copyOf(eosTokenIds);
    }

    public int groups() {
        return numHeads / numKvHeads;
    }

    public static ModelConfig load(Path modelDir) {
        Path file = modelDir.resolve("config.json");
        return parse(Json.read(file), file.toString());
    }

    public static ModelConfig parse(JsonNode c, String where) {
        String type = str(c, "model_type", where);
        if (!type.equals("qwen2") && !type.equals("llama")) {
            throw new UserError(where + ": model_type '" + type + "' is not supported; expected qwen2 or llama");
        }
        if (c.path("use_sliding_window").asBoolean(false)) {
            throw new UserError(where + ": use_sliding_window=true is not supported; expected false");
        }
        String act = c.path("hidden_act").asText("silu");
        if (!act.equals("silu")) {
            throw new UserError(where + ": hidden_act '" + act + "' is not supported; expected silu");
        }
        int hidden = posInt(c, "hidden_size", where);
        int heads = posInt(c, "num_attention_heads", where);
        int kv = c.has("num_key_value_heads") ? posInt(c, "num_key_value_heads", where) : heads;
        int headDim = c.hasNonNull("head_dim") ? posInt(c, "head_dim", where) : hidden / heads;
        RopeScaling scaling = null;
        JsonNode rs = c.get("rope_scaling");
        if (rs != null && !rs.isNull()) {
            String rt = rs.has("rope_type") ? rs.get("rope_type").asText() : rs.path("type").asText("default");
            if (rt.equals("llama3")) {
                scaling = new RopeScaling(num(rs, "factor", where + " rope_scaling"),
                        num(rs, "low_freq_factor", where + " rope_scaling"),
                        num(rs, "high_freq_factor", where + " rope_scaling"),
                        (int) num(rs, "original_max_position_embeddings", where + " rope_scaling"));
            } else if (!rt.equals("default")) {
                throw new UserError(where + ": rope_scaling.rope_type '" + rt
                        + "' is not supported; expected llama3 or default");
            }
        }
        boolean qwen = type.equals("qwen2");
        boolean attnBias = c.path("attention_bias").asBoolean(false);
        List<Integer> eos = new ArrayList<>();
        JsonNode e = c.get("eos_token_id");
        if (e != null && e.isArray()) {
            e.forEach(x -> eos.add(x.asInt()));
        } else if (e != null && e.isInt()) {
            eos.add(e.asInt());
        }
        return new ModelConfig(type,
                posInt(c, "vocab_size", where), hidden, posInt(c, "intermediate_size", where),
                posInt(c, "num_hidden_layers", where), heads, kv, headDim,
                c.has("rms_norm_eps") ? num(c, "rms_norm_eps", where) : 1e-6,
                c.has("rope_theta") ? num(c, "rope_theta", where) : 10000.0,
                scaling,
                c.path("tie_word_embeddings").asBoolean(false),
                // Qwen2 always has q/k/v biases and none on o_proj; Llama's attention_bias covers all four.
                qwen || attnBias, !qwen && attnBias,
                !qwen && c.path("mlp_bias").asBoolean(false),
                c.path("max_position_embeddings").asInt(32768),
                eos);
    }

    private static String str(JsonNode c, String key, String where) {
        JsonNode n = c.get(key);
        if (n == null || !n.isTextual()) {
            throw new UserError(where + ": field '" + key + "' is missing or not a string");
        }
        return n.asText();
    }

    private static int posInt(JsonNode c, String key, String where) {
        JsonNode n = c.get(key);
        if (n == null || !n.canConvertToInt() || !n.isIntegralNumber() || n.asInt() <= 0) {
            throw new UserError(where + ": field '" + key + "' must be a positive integer, got " + n);
        }
        return n.asInt();
    }

    private static double num(JsonNode c, String key, String where) {
        JsonNode n = c.get(key);
        if (n == null || !n.isNumber()) {
            throw new UserError(where + ": field '" + key + "' must be a number, got " + n);
        }
        return n.asDouble();
    }

    /** Every tensor name and shape a checkpoint of this config must contain, in HF layout. */
    public java.util.LinkedHashMap<String, long[]> expectedTensors() {
        var m = new java.util.LinkedHashMap<String, long[]>();
        long h = hiddenSize, q = (long) numHeads * headDim, kvd = (long) numKvHeads * headDim, inter = intermediateSize;
        m.put("model.embed_tokens.weight", new long[] {vocabSize, h});
        for (int i = 0; i < numLayers; i++) {
            String p = "model.layers." + i + ".";
            m.put(p + "input_layernorm.weight", new long[] {h});
            m.put(p + "self_attn.q_proj.weight", new long[] {q, h});
            m.put(p + "self_attn.k_proj.weight", new long[] {kvd, h});
            m.put(p + "self_attn.v_proj.weight", new long[] {kvd, h});
            if (qkvBias) {
                m.put(p + "self_attn.q_proj.bias", new long[] {q});
                m.put(p + "self_attn.k_proj.bias", new long[] {kvd});
                m.put(p + "self_attn.v_proj.bias", new long[] {kvd});
            }
            m.put(p + "self_attn.o_proj.weight", new long[] {h, q});
            if (oBias) {
                m.put(p + "self_attn.o_proj.bias", new long[] {h});
            }
            m.put(p + "post_attention_layernorm.weight", new long[] {h});
            m.put(p + "mlp.gate_proj.weight", new long[] {inter, h});
            m.put(p + "mlp.up_proj.weight", new long[] {inter, h});
            m.put(p + "mlp.down_proj.weight", new long[] {h, inter});
            if (mlpBias) {
                m.put(p + "mlp.gate_proj.bias", new long[] {inter});
                m.put(p + "mlp.up_proj.bias", new long[] {inter});
                m.put(p + "mlp.down_proj.bias", new long[] {h});
            }
        }
        m.put("model.norm.weight", new long[] {h});
        if (!tieWordEmbeddings) {
            m.put("lm_head.weight", new long[] {vocabSize, h});
        }
        return m;
    }

    public long parameterCount() {
        long n = 0;
        for (long[] s : expectedTensors().values()) {
            long p = 1;
            for (long d : s) {
                p *= d;
            }
            n += p;
        }
        return n;
    }

    /** Parameters of one decoder layer (all layers are alike). */
    public long layerParameterCount() {
        long n = 0;
        for (var e : expectedTensors().entrySet()) {
            if (e.getKey().startsWith("model.layers.0.")) {
                long p = 1;
                for (long d : e.getValue()) {
                    p *= d;
                }
                n += p;
            }
        }
        return n;
    }
}
