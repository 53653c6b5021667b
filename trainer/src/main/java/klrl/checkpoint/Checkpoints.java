package klrl.checkpoint;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;
import klrl.model.SafeTensors;
import klrl.util.Json;
import klrl.util.UserError;

/**
 * OUTPUT/checkpoints/step-NNNNNN/, each written whole into a temp folder and renamed into place, then
 * OUTPUT/checkpoints/latest (a one-line file) updated atomically: a crash at any moment leaves the
 * previous checkpoint intact and pointed to.
 *
 * <p>Contents: model.safetensors (full weights, with the base folder's config and tokenizer files, so
 * it is a loadable HF model) or adapter_model.safetensors + adapter_config.json (LoRA, PEFT names);
 * value_head.safetensors (PPO); optimizer.safetensors; trainer_state.json.
 */
public final class Checkpoints {
    private Checkpoints() {}

    /** The files besides the weights that make a folder a loadable HF model. */
    public static final List<String> MODEL_FILES = List.of("config.json", "generation_config.json", "tokenizer.json",
            "tokenizer_config.json", "special_tokens_map.json");

    /** The trainer's counters a checkpoint holds (trainer_state.json). */
    public record State(long step, long optimizerSteps, double klCoef, Map<String, Object> extra) {}

    /**
     * Everything a checkpoint holds.
     *
     * @param baseModel     the model folder training started from (its config and tokenizer files are copied)
     * @param weights       full weights by HF name, or the LoRA adapters by PEFT name
     * @param adapterConfig PEFT's adapter_config.json (LoRA only)
     * @param valueHead     PPO's critic parameters, else null
     */
    public record Contents(State state, Path baseModel, Map<String, NDArray> weights, boolean lora,
                           Map<String, Object> adapterConfig, Map<String, NDArray> valueHead, Map<String, NDArray> optimizer) {}

    public static Path save(Path outputDir, Contents c, int keep) throws IOException {
        State state = c.state();
        Path baseModel = c.baseModel();
        Map<String, NDArray> weights = c.weights();
        boolean lora = c.lora();
        Path root = outputDir.resolve("checkpoints");
        Files.createDirectories(root);
        String name = String.format("step-%06d", state.step());
        Path tmp = root.resolve(name + ".tmp");
        deleteTree(tmp);
        Files.createDirectories(tmp);
        if (lora) {
            SafeTensors.write(tmp.resolve("adapter"), weights, "F32", Long.MAX_VALUE);
            Files.move(tmp.resolve("adapter/model.safetensors"), tmp.resolve("adapter_model.safetensors"));
            deleteTree(tmp.resolve("adapter"));
            Json.writeAtomically(tmp.resolve("adapter_config.json"), Json.MAPPER.writerWithDefaultPrettyPrinter()
                    .writeValueAsString(c.adapterConfig()));
        } else {
            SafeTensors.write(tmp, weights, dtypeOf(weights), 4L << 30);
        }
        for (String f : MODEL_FILES) {
            if (Files.isRegularFile(baseModel.resolve(f))) {
                Files.copy(baseModel.resolve(f), tmp.resolve(f));
            }
        }
        if (c.valueHead() != null) {
            writeSingle(tmp.resolve("value_head.safetensors"), c.valueHead());
        }
        writeSingle(tmp.resolve("optimizer.safetensors"), c.optimizer());
        ObjectNode st = Json.MAPPER.createObjectNode();
        st.put("step", state.step());
        st.put("optimizer_steps", state.optimizerSteps());
        st.put("kl_coef", state.klCoef());
        st.put("base_model", baseModel.toAbsolutePath().toString());
        st.put("lora", lora);
        st.set("extra", Json.MAPPER.valueToTree(state.extra()));
        Json.writeAtomically(tmp.resolve("trainer_state.json"), Json.MAPPER.writerWithDefaultPrettyPrinter().writeValueAsString(st));
        Path fin = root.resolve(name);
        deleteTree(fin);
        Files.move(tmp, fin, StandardCopyOption.ATOMIC_MOVE);
        Json.writeAtomically(root.resolve("latest"), name + "\n");
        prune(root, keep);
        return fin;
    }

    private static String dtypeOf(Map<String, NDArray> w) {
        return w.values().iterator().next().getDataType() == DataType.FLOAT16 ? "F16" : "F32";
    }

    private static void writeSingle(Path file, Map<String, NDArray> tensors) throws IOException {
        Path dir = file.resolveSibling(file.getFileName() + ".d");
        SafeTensors.write(dir, tensors, "F32", Long.MAX_VALUE);
        Files.move(dir.resolve("model.safetensors"), file, StandardCopyOption.REPLACE_EXISTING);
        deleteTree(dir);
    }

    /** A checkpoint folder from a run folder (its latest) or a checkpoint folder itself. */
    public static Path resolve(Path p) {
        if (Files.isRegularFile(p.resolve("trainer_state.json"))) {
            return p;
        }
        Path latest = p.resolve("checkpoints/latest");
        if (Files.isRegularFile(latest)) {
            try {
                Path c = p.resolve("checkpoints").resolve(Files.readString(latest).strip());
                if (Files.isRegularFile(c.resolve("trainer_state.json"))) {
                    return c;
                }
            } catch (IOException e) {
                throw new UserError(latest + ": cannot read");
            }
        }
        throw new UserError("--resume " + p + ": no checkpoint there (expected trainer_state.json or checkpoints/latest)");
    }

    public static JsonNode state(Path ckpt) {
        return Json.read(ckpt.resolve("trainer_state.json"));
    }

    /** Reads a single-file safetensors into a name → array map (fp32). */
    public static Map<String, NDArray> readAll(Path file, NDManager m) {
        if (!Files.isRegularFile(file)) {
            throw new UserError(file + ": missing from the checkpoint");
        }
        Map<String, NDArray> out = new LinkedHashMap<>();
        for (var e : SafeTensors.readHeader(file).entrySet()) {
            out.put(e.getKey(), SafeTensors.load(e.getValue(), m, DataType.FLOAT32));
        }
        return out;
    }

    private static void prune(Path root, int keep) throws IOException {
        List<Path> all = new ArrayList<>();
        try (Stream<Path> s = Files.list(root)) {
            s.filter(p -> p.getFileName().toString().matches("step-\\d+")).sorted().forEach(all::add);
        }
        for (int i = 0; i < all.size() - keep; i++) {
            deleteTree(all.get(i));
        }
    }

    public static void deleteTree(Path p) throws IOException {
        if (!Files.exists(p)) {
            return;
        }
        try (Stream<Path> s = Files.walk(p)) {
            for (Path x : s.sorted(Comparator.reverseOrder()).toList()) {
                Files.delete(x);
            }
        }
    }
}
