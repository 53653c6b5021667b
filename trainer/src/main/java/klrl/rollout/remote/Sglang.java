package klrl.rollout.remote;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.util.List;
import klrl.rollout.SamplingParams;
import klrl.util.Json;

/**
 * SGLang's native API: {@code POST /generate} with a GenerateReqInput (token ids, sampling_params,
 * return_logprob), {@code POST /update_weights_from_disk} (UpdateWeightFromDiskReqInput: model_path,
 * weight_version), {@code /load_lora_adapter} and {@code /unload_lora_adapter} (lora_name, lora_path),
 * {@code POST /update_weight_version} (new_version) and the weight-version query of the release (see
 * {@link #versionQueries}). Every
 * generate response carries {@code meta_info.weight_version}, which is checked against the version asked for.
 */
public final class Sglang implements Dialect {
    @Override
    public String name() {
        return "sglang";
    }

    @Override
    public Call generate(long[] prompt, SamplingParams p, long streamSeed, List<Long> stopIds, Weights weights) {
        ObjectNode b = Json.MAPPER.createObjectNode();
        ArrayNode ids = b.putArray("input_ids");
        for (long t : prompt) {
            ids.add(t);
        }
        ObjectNode s = b.putObject("sampling_params");
        s.put("max_new_tokens", p.maxNewTokens());
        s.put("temperature", p.temperature());
        s.put("top_p", p.topP());
        s.put("top_k", p.topK() > 0 ? p.topK() : -1); // SGLang: -1 = the whole vocabulary
        s.put("n", 1);
        s.put("sampling_seed", streamSeed);
        ArrayNode stop = s.putArray("stop_token_ids");
        stopIds.forEach(stop::add);
        if (!p.stopStrings().isEmpty()) {
            ArrayNode st = s.putArray("stop");
            p.stopStrings().forEach(st::add);
        }
        s.put("skip_special_tokens", false);
        s.put("no_stop_trim", true);
        b.put("return_logprob", true);
        b.put("logprob_start_len", -1); // output tokens only
        b.put("stream", false);
        if (weights.lora()) {
            b.put("lora_path", weights.tag()); // the adapter loaded under this name
        }
        return new Call("/generate", b);
    }

    @Override
    public ServerSample parse(JsonNode body, Weights weights, List<Long> stopIds, int maxNewTokens) {
        JsonNode out = body != null && body.isArray() && body.size() == 1 ? body.get(0) : body;
        JsonNode meta = Dialect.field(out, "meta_info", "sglang /generate");
        String version = meta.path("weight_version").asText(null);
        if (!weights.tag().equals(version)) {
            throw new Stale("sglang /generate: served weight version " + version + ", expected " + weights.tag());
        }
        JsonNode ids = Dialect.field(out, "output_ids", "sglang /generate");
        JsonNode lps = Dialect.field(meta, "output_token_logprobs", "sglang /generate meta_info");
        long[] tokens = new long[ids.size()];
        float[] logprobs = new float[lps.size()];
        for (int i = 0; i < tokens.length; i++) {
            tokens[i] = ids.get(i).asLong();
        }
        for (int i = 0; i < logprobs.length; i++) {
            JsonNode e = lps.get(i); // [logprob, token_id, text or null]
            logprobs[i] = (float) e.get(0).asDouble(Double.NaN);
            if (i < tokens.length && e.get(1).asLong() != tokens[i]) {
                throw new Refused("sglang /generate: log-prob " + i + " is of token " + e.get(1) + ", output token " + tokens[i]);
            }
        }
        JsonNode fin = Dialect.field(meta, "finish_reason", "sglang /generate meta_info");
        String type = fin.path("type").asText("");
        String reason = switch (type) {
            case "length" -> "length";
            case "stop" -> fin.path("matched").isNumber() ? "eos" : "stop"; // a stop token id, or a stop string
            default -> throw new Refused("sglang /generate: finish_reason " + fin + " (aborted or unknown)");
        };
        return Dialect.checked(tokens, logprobs, reason, maxNewTokens, "sglang /generate");
    }

    @Override
    public List<Call> load(Weights w, Weights previous) {
        ObjectNode v = Json.MAPPER.createObjectNode().put("new_version", w.tag());
        if (!w.lora()) {
            ObjectNode b = Json.MAPPER.createObjectNode();
            b.put("model_path", w.dir().toAbsolutePath().toString());
            b.put("weight_version", w.tag());
            b.put("abort_all_requests", false);
            return List.of(new Call("/update_weights_from_disk", b));
        }
        ObjectNode b = Json.MAPPER.createObjectNode();
        b.put("lora_name", w.tag());
        b.put("lora_path", w.dir().toAbsolutePath().toString());
        List<Call> calls = new java.util.ArrayList<>(List.of(new Call("/load_lora_adapter", b), new Call("/update_weight_version", v)));
        if (previous != null) {
            calls.add(new Call("/unload_lora_adapter", Json.MAPPER.createObjectNode().put("lora_name", previous.tag())));
        }
        return calls;
    }

    /**
     * SGLang has renamed these: releases up to late 2025 serve {@code /get_weight_version} and
     * {@code /get_model_info}; later ones {@code /weight_version} and {@code /model_info} (the
     * {@code get_} forms deprecated, then 404), and the newest answer both weight-version paths with
     * 404 and carry {@code weight_version} in {@code /model_info} only. Every one answers
     * {@code {"weight_version": ...}} (model info among other fields).
     */
    @Override
    public List<Call> versionQueries() {
        return List.of(new Call("/weight_version", null), new Call("/model_info", null), new Call("/get_weight_version", null),
                new Call("/get_model_info", null));
    }

    @Override
    public String servedVersion(JsonNode body) {
        return body.path("weight_version").asText(null);
    }
}
