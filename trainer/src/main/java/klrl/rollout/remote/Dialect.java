package klrl.rollout.remote;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.nio.file.Path;
import java.util.List;
import klrl.rollout.SamplingParams;

/**
 * What an inference server's HTTP API looks like to the trainer: how one sample is asked for and
 * read back, how a new version of the weights is loaded, and how the served version is told. One
 * implementation per engine, each following that engine's own request and response types (named in
 * src/site/markdown/rollout-servers.md).
 */
public sealed interface Dialect permits Sglang, Vllm {

    /** One HTTP call: GET when {@code body} is null, else POST with the JSON body. */
    record Call(String path, ObjectNode body) {}

    /**
     * A version of the policy's weights as written for the servers: {@code dir} holds an HF model
     * folder (full fine-tuning) or a PEFT adapter (LoRA); {@code tag} names it ("klrl-v3").
     */
    record Weights(long version, Path dir, boolean lora) {
        public String tag() {
            return "klrl-v" + version;
        }
    }

    /** A sample as a server returned it: response token ids, their log-probs, why it stopped (eos, stop, length). */
    record ServerSample(long[] tokens, float[] logprobs, String finishReason) {}

    /** A response that cannot enter a batch: malformed, aborted, or from weights other than asked for. */
    class Refused extends RuntimeException {
        public Refused(String message) {
            super(message);
        }
    }

    /** A response from weights other than the version asked for: the server is stale until a load succeeds on it. */
    final class Stale extends Refused {
        public Stale(String message) {
            super(message);
        }
    }

    String name();

    /**
     * The request for one sample of {@code prompt}, its sampler seeded with {@code streamSeed}, from
     * {@code weights}; {@code stopIds} end a sample as the local engine's end-of-sequence ids do.
     */
    Call generate(long[] prompt, SamplingParams p, long streamSeed, List<Long> stopIds, Weights weights);

    /** Reads one sample out of a response body, refusing it unless it is whole and from {@code weights}. */
    ServerSample parse(JsonNode body, Weights weights, List<Long> stopIds, int maxNewTokens);

    /** The calls that make a server serve {@code w}, in order (each must answer 2xx with success). */
    List<Call> load(Weights w, Weights previous);

    /**
     * GETs that tell which version a server serves, the current name first: a server that answers
     * one with 404 (a release that renamed or dropped it) is asked the next. {@link #servedVersion}
     * reads the answer of any of them.
     */
    List<Call> versionQueries();

    String servedVersion(JsonNode body);

    /** An HTTP 404: the server has no such endpoint (a {@link Refused} a caller may answer by asking another). */
    final class NotFound extends Refused {
        public NotFound(String message) {
            super(message);
        }
    }

    static Dialect of(String engine, String servedModel) {
        return switch (engine) {
            case "sglang" -> new Sglang();
            case "vllm" -> new Vllm(servedModel);
            default -> throw new IllegalArgumentException("no remote dialect for engine " + engine);
        };
    }

    /** A required field of a response, or a refusal naming it. */
    static JsonNode field(JsonNode n, String name, String where) {
        JsonNode v = n == null ? null : n.get(name);
        if (v == null || v.isNull()) {
            throw new Refused(where + ": the response has no '" + name + "'");
        }
        return v;
    }

    /** Checks a sample's shape: tokens and log-probs of equal length, at most max_new_tokens, finite. */
    static ServerSample checked(long[] tokens, float[] logprobs, String finish, int maxNewTokens, String where) {
        if (tokens.length == 0 || tokens.length > maxNewTokens) {
            throw new Refused(where + ": " + tokens.length + " tokens (expected 1 to max_new_tokens = " + maxNewTokens + ")");
        }
        if (logprobs.length != tokens.length) {
            throw new Refused(where + ": " + tokens.length + " tokens but " + logprobs.length + " log-probs");
        }
        for (float f : logprobs) {
            if (!(f <= 0) || Float.isInfinite(f)) {
                throw new Refused(where + ": a log-prob of " + f);
            }
        }
        return new ServerSample(tokens, logprobs, finish);
    }
}
