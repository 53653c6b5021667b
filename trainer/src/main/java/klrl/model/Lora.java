package klrl.model;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import com.fasterxml.jackson.databind.JsonNode;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import klrl.util.UserError;

/**
 * A low-rank adapter on one linear weight W [out, in]: y = W·x + (α/r)·B·A·dropout(x), with A [r, in]
 * drawn like PEFT's kaiming-uniform default and B [out, r] zero, so a fresh adapter changes nothing.
 *
 * <p>Also the one place that knows PEFT's on-disk format: tensor names
 * ({@code base_model.model.<module>.lora_A.weight}), {@code adapter_config.json} and the merge.
 */
public final class Lora {
    public final NDArray a, b;
    public final float scale;
    public final float dropout;

    public Lora(NDArray a, NDArray b, float scale, float dropout) {
        this.a = a;
        this.b = b;
        this.scale = scale;
        this.dropout = dropout;
    }

    public static Lora init(NDManager m, long out, long in, int rank, double alpha, double dropout, DataType dtype,
                            SplittableRandom rng) {
        float[] av = new float[(int) (rank * in)];
        double bound = 1 / Math.sqrt(in); // kaiming_uniform(a=√5) on [r, in] gives U(−1/√in, 1/√in)
        for (int i = 0; i < av.length; i++) {
            av[i] = (float) rng.nextDouble(-bound, bound);
        }
        NDArray a = m.create(av, new Shape(rank, in)).toType(dtype, false);
        NDArray b = m.zeros(new Shape(out, rank), dtype);
        return new Lora(a, b, (float) (alpha / rank), (float) dropout);
    }

    /** The adapter's contribution for input x [..., in]. */
    NDArray apply(NDArray x, boolean training) {
        NDArray h = x;
        if (training && dropout > 0) {
            NDArray keep = x.getManager().randomUniform(0, 1, x.getShape(), x.getDataType()).gte(dropout)
                    .toType(x.getDataType(), false).div(1 - dropout); // mask is not differentiated
            h = x.mul(keep);
        }
        return klrl.util.Nd.mul(Decoder.linear(Decoder.linear(h, a, null), b, null), scale);
    }

    /** W + (α/r)·B·A, for merging into an exported checkpoint. */
    public NDArray merged(NDArray w) {
        return w.add(b.matMul(a).mul(scale));
    }

    private static final String PEFT_PREFIX = "base_model.model.", A_SUFFIX = ".lora_A.weight", B_SUFFIX = ".lora_B.weight";

    /** The adapters' A and B under PEFT's names, in the adapters' order (weight name → adapter). */
    public static Map<String, NDArray> peftTensors(Map<String, Lora> adapters) {
        Map<String, NDArray> out = new LinkedHashMap<>();
        adapters.forEach((weight, l) -> {
            String module = PEFT_PREFIX + weight.substring(0, weight.length() - ".weight".length());
            out.put(module + A_SUFFIX, l.a);
            out.put(module + B_SUFFIX, l.b);
        });
        return out;
    }

    /** Whether a name is one of {@link #peftTensors}'s. */
    public static boolean isPeftName(String name) {
        return name.startsWith(PEFT_PREFIX) && (name.endsWith(A_SUFFIX) || name.endsWith(B_SUFFIX));
    }

    /** PEFT's adapter_config.json for these settings. */
    public static Map<String, Object> adapterConfig(int rank, double alpha, double dropout, List<String> targetModules,
                                                    Path baseModel) {
        Map<String, Object> c = new LinkedHashMap<>();
        c.put("peft_type", "LORA");
        c.put("r", rank);
        c.put("lora_alpha", alpha);
        c.put("lora_dropout", dropout);
        c.put("target_modules", targetModules);
        c.put("bias", "none");
        c.put("task_type", "CAUSAL_LM");
        c.put("base_model_name_or_path", baseModel.toAbsolutePath().toString());
        return c;
    }

    /**
     * Merges PEFT adapter tensors into the base weights they name (replacing those entries), with
     * scale lora_alpha / r from the adapter config.
     */
    public static void mergeInto(Map<String, NDArray> weights, Map<String, NDArray> peft, JsonNode adapterConfig, String where) {
        float scale = (float) (adapterConfig.get("lora_alpha").asDouble() / adapterConfig.get("r").asDouble());
        for (var e : peft.entrySet()) {
            if (!e.getKey().endsWith(A_SUFFIX)) {
                continue;
            }
            String stem = e.getKey().substring(PEFT_PREFIX.length(), e.getKey().length() - A_SUFFIX.length());
            NDArray b = peft.get(PEFT_PREFIX + stem + B_SUFFIX);
            NDArray w = weights.get(stem + ".weight");
            if (b == null || w == null) {
                throw new UserError(where + ": adapter '" + stem + "' has no lora_B or no base weight");
            }
            weights.put(stem + ".weight", new Lora(e.getValue(), b, scale, 0).merged(w));
        }
    }
}
