package klrl.rollout.remote;

import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.Executors;
import java.util.concurrent.atomic.AtomicInteger;
import klrl.checkpoint.Checkpoints;
import klrl.model.Decoder;
import klrl.model.Lora;
import klrl.model.SafeTensors;
import klrl.model.Tokenizer;
import klrl.rollout.RolloutEngine;
import klrl.rollout.Sample;
import klrl.rollout.SamplingParams;
import klrl.util.Json;

/**
 * A stand-in for an SGLang or a vLLM server, for tests: neither can run here. It speaks the HTTP
 * schemas of those servers as their sources define them — SGLang's GenerateReqInput, SamplingParams,
 * UpdateWeightFromDiskReqInput and /generate output (text, output_ids, meta_info); vLLM's
 * CompletionRequest and CompletionResponse, LoRA and development endpoints (versions named in
 * src/site/markdown/rollout-servers.md) — and answers a request field those types do not have with
 * HTTP 400, as their validation does. It generates with this project's rollout engine, one sample per
 * request, seeding the sampler with the request's seed (sampling_seed / seed) as the local engine
 * seeds each sample's stream; so a remote run against it draws what a local run draws. Weight loads
 * read the folders the trainer writes. Faults can be injected.
 */
public final class StandInServer implements AutoCloseable {
    public enum Kind { SGLANG, VLLM }

    /**
     * Which SGLang release's weight-version endpoints the stand-in serves (sglang's http_server.py over
     * time): LEGACY only {@code /get_weight_version} and {@code /get_model_info}; CURRENT
     * {@code /weight_version} and {@code /model_info}, the {@code get_} forms 404; NEWEST only
     * {@code /model_info} (both weight-version paths 404, "deprecated, use /model_info").
     */
    public enum SglangRelease { LEGACY, CURRENT, NEWEST }

    public volatile SglangRelease release = SglangRelease.CURRENT;
    /** Weight-version queries answered, by path. */
    public final Map<String, AtomicInteger> versionQueries = new java.util.concurrent.ConcurrentHashMap<>();

    /**
     * A proxy in front of the server (nginx, a cloud load balancer) answers every 404 with its own HTML
     * page instead of SGLang's JSON body.
     */
    public volatile boolean htmlNotFound;

    /** Hold the next this many generate requests for {@link #slowMs} and then drop them (a client's timeout). */
    public final AtomicInteger slowNext = new AtomicInteger();
    public volatile long slowMs = 3000;
    /** Answer the next this many generate requests with HTTP 503. */
    public final AtomicInteger failNext = new AtomicInteger();
    /** After this many generate requests the server drops the connection and stops listening (−1: never). */
    public volatile int dieAfter = -1;
    /** Weight loads fail (SGLang: success=false; vLLM: HTTP 400). */
    public volatile boolean failLoads;
    /** Weight loads answer success but change nothing: the server keeps its weights and its version. */
    public volatile boolean ignoreLoads;
    /** Generate requests answered. */
    public final AtomicInteger generated = new AtomicInteger();
    /**
     * Nats added to each reported log-prob, cycling over the response's positions (null: log softmax(logits/T)
     * of the stand-in's engine, before any top-p/top-k truncation, as SGLang reports). A real server's reports differ from what the trainer
     * computes (bf16 kernels, vLLM's raw_logprobs before temperature); the stand-in samples with this
     * project's own engine, so this is how a test gets weights π_old/μ away from 1, above a truncation
     * threshold or outside a rejection band.
     */
    public volatile double[] logprobShift;

    private final Kind kind;
    private final HttpServer http;
    private final Path baseModel;
    private final NDManager root;
    private final Tokenizer tok;
    private Decoder model;
    private final Map<String, Decoder> adapters = new HashMap<>();
    private String version;
    private final String served;

    public StandInServer(Kind kind, Path baseModel) throws IOException {
        this.kind = kind;
        this.baseModel = baseModel;
        this.root = NDManager.newBaseManager(ai.djl.Device.cpu(), "PyTorch");
        this.tok = Tokenizer.load(baseModel);
        this.model = Decoder.load(baseModel, root, DataType.FLOAT32);
        this.version = kind == Kind.SGLANG ? "default" : null; // SGLang's --weight-version default; vLLM's is unset
        this.served = baseModel.toString(); // both name the model by the path they were started with
        this.http = HttpServer.create(new InetSocketAddress("127.0.0.1", 0), 0);
        http.setExecutor(Executors.newFixedThreadPool(8, r -> {
            Thread t = new Thread(r, "stand-in-" + kind);
            t.setDaemon(true);
            return t;
        }));
        http.createContext("/", this::handle);
        http.start();
    }

    public String url() {
        return "http://127.0.0.1:" + http.getAddress().getPort();
    }

    // The fields each request type has in the engines' sources; anything else is a 400.
    static final Set<String> SGLANG_GENERATE = Set.of("rid", "text", "input_ids", "input_embeds", "image_data", "video_data",
            "audio_data", "sampling_params", "return_logprob", "logprob_start_len", "top_logprobs_num", "token_ids_logprob",
            "return_text_in_logprobs", "stream", "log_metrics", "return_hidden_states", "modalities", "session_params",
            "lora_path", "lora_id", "custom_logit_processor", "bootstrap_host", "bootstrap_port", "bootstrap_room",
            "data_parallel_rank", "priority", "extra_key", "no_logs", "custom_labels", "return_bytes", "return_entropy");
    static final Set<String> SGLANG_SAMPLING = Set.of("max_new_tokens", "stop", "stop_token_ids", "stop_regex", "temperature",
            "top_p", "top_k", "min_p", "frequency_penalty", "presence_penalty", "repetition_penalty", "min_new_tokens", "n",
            "json_schema", "regex", "ebnf", "structural_tag", "ignore_eos", "skip_special_tokens", "spaces_between_special_tokens",
            "no_stop_trim", "custom_params", "stream_interval", "logit_bias", "sampling_seed");
    static final Set<String> SGLANG_UPDATE_FROM_DISK = Set.of("rid", "model_path", "load_format", "abort_all_requests",
            "weight_version", "is_async", "torch_empty_cache", "keep_pause", "recapture_cuda_graph", "token_step", "flush_cache",
            "manifest");
    static final Set<String> SGLANG_LOAD_LORA = Set.of("rid", "lora_name", "lora_path", "pinned", "lora_id");
    static final Set<String> SGLANG_UNLOAD_LORA = Set.of("rid", "lora_name", "lora_id");
    static final Set<String> WEIGHT_VERSION = Set.of("new_version", "abort_all_requests");
    static final Set<String> VLLM_COMPLETION = Set.of("model", "prompt", "echo", "frequency_penalty", "logit_bias", "logprobs",
            "max_tokens", "n", "presence_penalty", "seed", "stop", "stream", "stream_options", "suffix", "temperature", "top_p",
            "user", "use_beam_search", "top_k", "min_p", "repetition_penalty", "length_penalty", "stop_token_ids",
            "include_stop_str_in_output", "ignore_eos", "min_tokens", "skip_special_tokens", "spaces_between_special_tokens",
            "truncate_prompt_tokens", "truncation_side", "allowed_token_ids", "prompt_logprobs", "logprob_token_ids", "bad_words",
            "prompt_embeds", "add_special_tokens", "response_format", "structured_outputs", "priority", "request_id",
            "return_tokens_as_token_ids", "return_token_ids", "return_token_offsets", "cache_salt", "kv_transfer_params",
            "ec_transfer_params", "vllm_xargs", "repetition_detection", "thinking_token_budget");
    static final Set<String> VLLM_LOAD_LORA = Set.of("lora_name", "lora_path", "load_inplace");
    static final Set<String> VLLM_UNLOAD_LORA = Set.of("lora_name", "lora_int_id");
    static final Set<String> VLLM_RPC = Set.of("method", "args", "kwargs", "timeout");

    private void handle(HttpExchange ex) throws IOException {
        try (ex) {
            String path = ex.getRequestURI().getPath();
            JsonNode body = ex.getRequestMethod().equals("POST")
                    ? Json.MAPPER.readTree(new String(ex.getRequestBody().readAllBytes(), StandardCharsets.UTF_8)) : null;
            Reply r = kind == Kind.SGLANG ? sglang(path, body) : vllm(path, body);
            if (r == null) {
                return; // dropped: the connection closes without an answer
            }
            boolean html = htmlNotFound && r.code == 404;
            byte[] out = (html ? "<html><head><title>404 Not Found</title></head><body><center><h1>404 Not Found</h1></center>"
                    + "<hr><center>nginx</center></body></html>" : r.body == null ? "" : Json.write(r.body)).getBytes(StandardCharsets.UTF_8);
            ex.getResponseHeaders().add("Content-Type", html ? "text/html" : "application/json");
            ex.sendResponseHeaders(r.code, out.length == 0 ? -1 : out.length);
            if (out.length > 0) {
                ex.getResponseBody().write(out);
            }
        }
    }

    private record Reply(int code, JsonNode body) {}

    private static Reply ok(JsonNode body) {
        return new Reply(200, body);
    }

    private static Reply error(int code, String message) {
        return new Reply(code, Json.MAPPER.createObjectNode().put("object", "error").put("message", message));
    }

    /** HTTP 400 naming the first field {@code allowed} lacks, or null. */
    private static Reply unknownField(JsonNode body, Set<String> allowed, String type) {
        for (Iterator<String> it = body.fieldNames(); it.hasNext(); ) {
            String f = it.next();
            if (!allowed.contains(f)) {
                return error(400, type + " has no field '" + f + "'");
            }
        }
        return null;
    }

    private Reply sglang(String path, JsonNode b) throws IOException {
        switch (path) {
            case "/health", "/health_generate":
                return ok(null);
            case "/get_weight_version", "/weight_version", "/get_model_info", "/model_info": {
                boolean info = path.endsWith("model_info"), legacy = path.startsWith("/get_");
                boolean served = switch (release) {
                    case LEGACY -> legacy;
                    case CURRENT -> !legacy;
                    case NEWEST -> path.equals("/model_info");
                };
                if (!served) {
                    return error(404, "Not Found");
                }
                versionQueries.computeIfAbsent(path, k -> new AtomicInteger()).incrementAndGet();
                ObjectNode r = Json.MAPPER.createObjectNode();
                if (info) {
                    r.put("model_path", this.served).put("tokenizer_path", this.served).put("is_generation", true);
                    r.putNull("preferred_sampling_params");
                }
                return ok(r.put("weight_version", version));
            }
            case "/generate": {
                Reply bad = unknownField(b, SGLANG_GENERATE, "GenerateReqInput");
                bad = bad != null ? bad : unknownField(b.path("sampling_params"), SGLANG_SAMPLING, "SamplingParams");
                if (bad != null) {
                    return bad;
                }
                Reply fault = fault();
                if (fault != null || dropped()) {
                    return fault;
                }
                JsonNode sp = b.get("sampling_params");
                String lora = b.path("lora_path").asText(null);
                Generated g = generate(ids(b.get("input_ids")), sp.path("max_new_tokens").asInt(128), sp.path("temperature").asDouble(1),
                        sp.path("top_p").asDouble(1), sp.path("top_k").asInt(-1), strings(sp.get("stop")), ids(sp.get("stop_token_ids")),
                        sp.path("sampling_seed").asLong(), lora);
                if (g == null) {
                    return error(400, "LoRA adapter '" + lora + "' is not loaded");
                }
                ObjectNode out = Json.MAPPER.createObjectNode();
                out.put("text", tok.decode(g.sample.responseIds()));
                ArrayNode oids = out.putArray("output_ids");
                ObjectNode meta = out.putObject("meta_info");
                meta.put("id", java.util.UUID.randomUUID().toString().replace("-", ""));
                ObjectNode fin = meta.putObject("finish_reason");
                long[] r = g.sample.responseIds();
                switch (g.sample.finishReason()) {
                    case "eos" -> fin.put("type", "stop").put("matched", r[r.length - 1]);
                    case "stop" -> fin.put("type", "stop").put("matched", g.stopString);
                    default -> fin.put("type", "length").put("length", r.length);
                }
                meta.put("prompt_tokens", g.prompt.length);
                meta.put("completion_tokens", r.length);
                meta.put("cached_tokens", 0);
                ArrayNode lps = meta.putArray("output_token_logprobs");
                for (int i = 0; i < r.length; i++) {
                    oids.add(r[i]);
                    lps.addArray().add(reported(g, i)).add(r[i]).addNull();
                }
                meta.put("weight_version", version);
                return ok(out);
            }
            case "/update_weights_from_disk": {
                Reply bad = unknownField(b, SGLANG_UPDATE_FROM_DISK, "UpdateWeightFromDiskReqInput");
                if (bad != null) {
                    return bad;
                }
                ObjectNode res = Json.MAPPER.createObjectNode();
                if (failLoads) {
                    return new Reply(400, res.put("success", false).put("message", "Failed to load weights: stand-in told to fail")
                            .put("num_paused_requests", 0));
                }
                if (!ignoreLoads) {
                    loadFull(Path.of(b.get("model_path").asText()));
                    if (b.hasNonNull("weight_version")) {
                        version = b.get("weight_version").asText();
                    }
                }
                return ok(res.put("success", true).put("message", "Succeeded to update model weights.").put("num_paused_requests", 0));
            }
            case "/load_lora_adapter": {
                Reply bad = unknownField(b, SGLANG_LOAD_LORA, "LoadLoRAAdapterReqInput");
                return bad != null ? bad : loadLora(b);
            }
            case "/unload_lora_adapter": {
                Reply bad = unknownField(b, SGLANG_UNLOAD_LORA, "UnloadLoRAAdapterReqInput");
                return bad != null ? bad : unloadLora(b);
            }
            case "/update_weight_version": {
                Reply bad = unknownField(b, WEIGHT_VERSION, "UpdateWeightVersionReqInput");
                if (bad != null) {
                    return bad;
                }
                if (!ignoreLoads) {
                    version = b.get("new_version").asText();
                }
                return ok(Json.MAPPER.createObjectNode().put("success", true).put("message", "Weight version updated to " + version)
                        .put("new_version", b.get("new_version").asText()));
            }
            default:
                return error(404, "Not Found");
        }
    }

    private Reply vllm(String path, JsonNode b) throws IOException {
        switch (path) {
            case "/health":
                return ok(null);
            case "/v1/models": {
                ObjectNode out = Json.MAPPER.createObjectNode().put("object", "list");
                ArrayNode data = out.putArray("data");
                data.addObject().put("id", served).put("object", "model").put("owned_by", "vllm").put("root", served);
                synchronized (this) {
                    adapters.keySet().forEach(n -> data.addObject().put("id", n).put("object", "model").put("parent", served));
                }
                return ok(out);
            }
            case "/weight_info":
                return ok(Json.MAPPER.createObjectNode().put("weight_version", version));
            case "/v1/completions": {
                Reply bad = unknownField(b, VLLM_COMPLETION, "CompletionRequest");
                if (bad != null) {
                    return bad;
                }
                Reply fault = fault();
                if (fault != null || dropped()) {
                    return fault;
                }
                String name = b.path("model").asText(served);
                Generated g = generate(ids(b.get("prompt")), b.path("max_tokens").asInt(16), b.path("temperature").asDouble(1),
                        b.path("top_p").asDouble(1), b.path("top_k").asInt(0), strings(b.get("stop")), ids(b.get("stop_token_ids")),
                        b.path("seed").asLong(), name.equals(served) ? null : name);
                if (g == null) {
                    return error(404, "The model `" + name + "` does not exist.");
                }
                long[] r = g.sample.responseIds();
                ObjectNode out = Json.MAPPER.createObjectNode();
                out.put("id", "cmpl-" + java.util.UUID.randomUUID().toString().replace("-", ""));
                out.put("object", "text_completion");
                out.put("created", System.currentTimeMillis() / 1000);
                out.put("model", name);
                ObjectNode c = out.putArray("choices").addObject();
                c.put("index", 0);
                c.put("text", tok.decode(r));
                ObjectNode lp = c.putObject("logprobs");
                ArrayNode off = lp.putArray("text_offset"), tl = lp.putArray("token_logprobs"), toks = lp.putArray("tokens"),
                        top = lp.putArray("top_logprobs");
                ArrayNode tids = c.putArray("token_ids");
                for (int i = 0; i < r.length; i++) {
                    off.add(i);
                    tl.add(reported(g, i));
                    toks.add(tok.decode(new long[] {r[i]}));
                    top.addObject().put(tok.decode(new long[] {r[i]}), reported(g, i));
                    tids.add(r[i]);
                }
                switch (g.sample.finishReason()) {
                    case "eos" -> c.put("finish_reason", "stop").put("stop_reason", r[r.length - 1]);
                    case "stop" -> c.put("finish_reason", "stop").put("stop_reason", g.stopString);
                    default -> c.put("finish_reason", "length").putNull("stop_reason");
                }
                c.putNull("prompt_logprobs");
                c.putNull("prompt_token_ids");
                out.putObject("usage").put("prompt_tokens", g.prompt.length).put("total_tokens", g.prompt.length + r.length)
                        .put("completion_tokens", r.length);
                return ok(out);
            }
            case "/v1/load_lora_adapter": {
                Reply bad = unknownField(b, VLLM_LOAD_LORA, "LoadLoRAAdapterRequest");
                if (bad != null) {
                    return bad;
                }
                Reply r = loadLora(b);
                return r.code == 200 ? new Reply(200, null) : r;
            }
            case "/v1/unload_lora_adapter": {
                Reply bad = unknownField(b, VLLM_UNLOAD_LORA, "UnloadLoRAAdapterRequest");
                return bad != null ? bad : unloadLora(b);
            }
            case "/collective_rpc": {
                Reply bad = unknownField(b, VLLM_RPC, "collective_rpc body");
                if (bad != null) {
                    return bad;
                }
                if (!b.path("method").asText().equals("reload_weights")) {
                    return error(400, "stand-in knows only reload_weights");
                }
                if (failLoads) {
                    return error(500, "reload_weights failed: stand-in told to fail");
                }
                if (!ignoreLoads) {
                    loadFull(Path.of(b.path("kwargs").path("weights_path").asText()));
                }
                return ok(Json.MAPPER.createObjectNode().set("results", Json.MAPPER.createArrayNode().addNull()));
            }
            case "/reset_prefix_cache":
                return ok(null);
            case "/update_weight_version": {
                Reply bad = unknownField(b, Set.of("new_version"), "update_weight_version body");
                if (bad != null) {
                    return bad;
                }
                if (!ignoreLoads) {
                    version = b.get("new_version").asText();
                }
                return ok(Json.MAPPER.createObjectNode().put("success", true).put("new_version", b.get("new_version").asText()));
            }
            default:
                return error(404, "Not Found");
        }
    }

    /** An injected 503, or null. */
    private Reply fault() {
        if (failNext.getAndUpdate(n -> Math.max(0, n - 1)) > 0) {
            return error(503, "Service Unavailable");
        }
        return null;
    }

    /** True when this request is dropped: held past the client's timeout, or the one the server dies at (it stops listening). */
    private boolean dropped() {
        if (slowNext.getAndUpdate(n -> Math.max(0, n - 1)) > 0) {
            try {
                Thread.sleep(slowMs);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
            return true;
        }
        int n = generated.get();
        if (dieAfter >= 0 && n >= dieAfter) {
            new Thread(() -> http.stop(0)).start();
            return true;
        }
        return false;
    }

    private record Generated(long[] prompt, Sample sample, String stopString) {}

    /** The log-prob reported for response token i: the drawn distribution's, shifted by {@link #logprobShift}. */
    private float reported(Generated g, int i) {
        double[] shift = logprobShift;
        return (float) (g.sample.logprobs()[i] + (shift == null ? 0 : shift[i % shift.length]));
    }

    /** One sample, its stream seeded with {@code seed}; null when the named adapter is not loaded. */
    private synchronized Generated generate(long[] prompt, int maxNew, double temperature, double topP, int topK,
                                            List<String> stop, long[] stopIds, long seed, String adapter) {
        Decoder m = adapter == null ? model : adapters.get(adapter);
        if (m == null) {
            return null;
        }
        List<Long> eos = new ArrayList<>();
        for (long t : stopIds) {
            eos.add(t);
        }
        RolloutEngine engine = new RolloutEngine(m, eos, tok::decode);
        SamplingParams p = new SamplingParams(maxNew, temperature, topP, Math.max(0, topK), 1, stop, 0);
        Sample s = engine.generateOne(prompt, p, seed, root);
        generated.incrementAndGet();
        String matched = null;
        if (s.finishReason().equals("stop")) {
            String text = tok.decode(s.responseIds());
            matched = stop.stream().filter(text::endsWith).findFirst().orElse(stop.get(0));
        }
        return new Generated(prompt, s, matched);
    }

    private synchronized void loadFull(Path dir) {
        Decoder old = model;
        model = Decoder.load(dir, root, DataType.FLOAT32);
        if (old != null) {
            old.close();
        }
    }

    private synchronized Reply loadLora(JsonNode b) throws IOException {
        if (failLoads) {
            return new Reply(400, Json.MAPPER.createObjectNode().put("success", false)
                    .put("error_message", "Failed to load LoRA adapter: stand-in told to fail"));
        }
        if (ignoreLoads) {
            return ok(Json.MAPPER.createObjectNode().put("success", true));
        }
        Path dir = Path.of(b.get("lora_path").asText());
        JsonNode cfg = Json.read(dir.resolve("adapter_config.json"));
        Decoder m = Decoder.load(baseModel, root, DataType.FLOAT32);
        List<String> targets = new ArrayList<>();
        cfg.get("target_modules").forEach(t -> targets.add(t.asText()));
        Map<String, Lora> a = m.addAdapters(targets, cfg.get("r").asInt(), cfg.get("lora_alpha").asDouble(), 0, 0);
        try (NDManager read = root.newSubManager()) { // the file's tensors go once copied in
            SafeTensors.copyInto(Lora.peftTensors(a), Checkpoints.readAll(dir.resolve("adapter_model.safetensors"), read),
                    dir + "/adapter_model.safetensors");
        }
        adapters.put(b.get("lora_name").asText(), m);
        return ok(Json.MAPPER.createObjectNode().put("success", true));
    }

    private synchronized Reply unloadLora(JsonNode b) {
        Decoder m = adapters.remove(b.get("lora_name").asText());
        if (m != null) {
            m.close();
        }
        return ok(Json.MAPPER.createObjectNode().put("success", true));
    }

    private static long[] ids(JsonNode a) {
        if (a == null || a.isNull()) {
            return new long[0];
        }
        long[] out = new long[a.size()];
        for (int i = 0; i < out.length; i++) {
            out[i] = a.get(i).asLong();
        }
        return out;
    }

    private static List<String> strings(JsonNode a) {
        List<String> out = new ArrayList<>();
        if (a != null && a.isArray()) {
            a.forEach(x -> out.add(x.asText()));
        } else if (a != null && a.isTextual()) {
            out.add(a.asText());
        }
        return out;
    }

    @Override
    public void close() {
        http.stop(0);
        tok.close();
        root.close();
    }
}
