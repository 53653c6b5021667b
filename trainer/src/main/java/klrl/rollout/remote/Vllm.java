package klrl.rollout.remote;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.util.List;
import klrl.rollout.SamplingParams;
import klrl.util.Json;

/**
 * vLLM's OpenAI-compatible server: {@code POST /v1/completions} (CompletionRequest with token ids as
 * the prompt, seed, stop_token_ids, logprobs 0 and return_token_ids; the choice's token_ids and
 * logprobs.token_logprobs come back). LoRA versions load at run time with
 * {@code /v1/load_lora_adapter} (VLLM_ALLOW_RUNTIME_LORA_UPDATING=True) and each request names its
 * adapter as the model, which the response echoes. Full weights reload from the version folder
 * through {@code POST /collective_rpc} {"method": "reload_weights"} and are tagged with
 * {@code POST /update_weight_version}, read back from {@code GET /weight_info} (the development
 * endpoints: VLLM_SERVER_DEV_MODE=1).
 */
public final class Vllm implements Dialect {
    private final String servedModel;

    /** @param servedModel the model name the server was started with (--served-model-name) */
    public Vllm(String servedModel) {
        this.servedModel = servedModel;
    }

    @Override
    public String name() {
        return "vllm";
    }

    @Override
    public Call generate(long[] prompt, SamplingParams p, long streamSeed, List<Long> stopIds, Weights weights) {
        ObjectNode b = Json.MAPPER.createObjectNode();
        b.put("model", weights.lora() ? weights.tag() : servedModel);
        ArrayNode ids = b.putArray("prompt");
        for (long t : prompt) {
            ids.add(t);
        }
        b.put("max_tokens", p.maxNewTokens());
        b.put("temperature", p.temperature());
        b.put("top_p", p.topP());
        b.put("top_k", p.topK() > 0 ? p.topK() : -1); // vLLM: -1 (or 0) = the whole vocabulary
        b.put("n", 1);
        b.put("seed", streamSeed);
        ArrayNode stop = b.putArray("stop_token_ids");
        stopIds.forEach(stop::add);
        if (!p.stopStrings().isEmpty()) {
            ArrayNode st = b.putArray("stop");
            p.stopStrings().forEach(st::add);
        }
        b.put("include_stop_str_in_output", true);
        b.put("skip_special_tokens", false);
        b.put("logprobs", 0); // the sampled token's log-prob only
        b.put("return_token_ids", true);
        return new Call("/v1/completions", b);
    }

    @Override
    public ServerSample parse(JsonNode body, Weights weights, List<Long> stopIds, int maxNewTokens) {
        if (weights.lora() && !weights.tag().equals(body.path("model").asText(null))) {
            throw new Stale("vllm /v1/completions: served by model " + body.path("model") + ", expected " + weights.tag());
        }
        JsonNode choices = Dialect.field(body, "choices", "vllm /v1/completions");
        if (choices.size() != 1) {
            throw new Refused("vllm /v1/completions: " + choices.size() + " choices, expected 1");
        }
        JsonNode c = choices.get(0);
        JsonNode ids = Dialect.field(c, "token_ids", "vllm /v1/completions choice");
        JsonNode lps = Dialect.field(Dialect.field(c, "logprobs", "vllm /v1/completions choice"), "token_logprobs",
                "vllm /v1/completions choice.logprobs");
        long[] tokens = new long[ids.size()];
        float[] logprobs = new float[lps.size()];
        for (int i = 0; i < tokens.length; i++) {
            tokens[i] = ids.get(i).asLong();
        }
        for (int i = 0; i < logprobs.length; i++) {
            logprobs[i] = (float) lps.get(i).asDouble(Double.NaN);
        }
        String finish = c.path("finish_reason").asText("");
        JsonNode stopReason = c.get("stop_reason");
        String reason = switch (finish) {
            case "length" -> "length";
            // stop_reason: null at the end-of-sequence token, a token id for stop_token_ids, a string for a stop string
            case "stop" -> stopReason != null && stopReason.isTextual() ? "stop" : "eos";
            default -> throw new Refused("vllm /v1/completions: finish_reason '" + finish + "' (aborted or unknown)");
        };
        return Dialect.checked(tokens, logprobs, reason, maxNewTokens, "vllm /v1/completions");
    }

    @Override
    public List<Call> load(Weights w, Weights previous) {
        List<Call> calls = new java.util.ArrayList<>();
        if (w.lora()) {
            ObjectNode b = Json.MAPPER.createObjectNode();
            b.put("lora_name", w.tag());
            b.put("lora_path", w.dir().toAbsolutePath().toString());
            calls.add(new Call("/v1/load_lora_adapter", b));
        } else {
            ObjectNode b = Json.MAPPER.createObjectNode();
            b.put("method", "reload_weights");
            b.putObject("kwargs").put("weights_path", w.dir().toAbsolutePath().toString());
            calls.add(new Call("/collective_rpc", b));
            calls.add(new Call("/reset_prefix_cache", Json.MAPPER.createObjectNode()));
        }
        calls.add(new Call("/update_weight_version", Json.MAPPER.createObjectNode().put("new_version", w.tag())));
        if (w.lora() && previous != null) {
            calls.add(new Call("/v1/unload_lora_adapter", Json.MAPPER.createObjectNode().put("lora_name", previous.tag())));
        }
        return calls;
    }

    @Override
    public List<Call> versionQueries() {
        return List.of(new Call("/weight_info", null));
    }

    @Override
    public String servedVersion(JsonNode body) {
        return body.path("weight_version").asText(null);
    }
}
