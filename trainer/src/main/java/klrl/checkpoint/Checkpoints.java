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
     * @param jsonFiles     further files of the run's state, by file name, written as JSON (the off-policy queue)
     */
    public record Contents(State state, Path baseModel, Map<String, NDArray> weights, boolean lora,
                           Map<String, Object> adapterConfig, Map<String, NDArray> valueHead, Map<String, NDArray> optimizer,
                           Map<String, Object> jsonFiles) {
        public Contents(State state, Path baseModel, Map<String, NDArray> weights, boolean lora, Map<String, Object> adapterConfig,
                        Map<String, NDArray> valueHead, Map<String, NDArray> optimizer) {
            this(state, baseModel, weights, lora, adapterConfig, valueHead, optimizer, Map.of());
        }
    }

    /**
     * Writes a checkpoint after {@code c.state().step()} steps and points {@code latest} at it. An I/O
     * error (a full disk, say) is one user error naming the folder, the bytes needed and the bytes free;
     * the temp folder is removed and earlier checkpoints and {@code latest} are left as they were.
     */
    public static Path save(Path outputDir, Contents c, int keep) {
        Path root = outputDir.resolve("checkpoints");
        String name = String.format("step-%06d", c.state().step());
        Path tmp = root.resolve(name + ".tmp"), fin = root.resolve(name);
        try {
            Files.createDirectories(root);
            deleteTree(tmp);
            Files.createDirectories(tmp);
            writeInto(tmp, c);
            writeManifest(tmp);
            deleteTree(fin);
            Files.move(tmp, fin, StandardCopyOption.ATOMIC_MOVE);
            Json.writeAtomically(root.resolve("latest"), name + "\n");
            prune(root, keep);
            return fin;
        } catch (IOException | java.io.UncheckedIOException e) {
            try {
                deleteTree(tmp);
            } catch (IOException ignored) {
                // the error below names the folder; nothing more can be done about it here
            }
            throw new UserError("cannot write checkpoint " + fin + ": " + Json.firstLine(String.valueOf(e.getMessage()))
                    + " (" + e.getClass().getSimpleName() + "; it needs about " + mib(bytesNeeded(c)) + ", "
                    + mib(usableSpace(root)) + " free there); the earlier checkpoints are intact");
        }
    }

    private static void writeInto(Path tmp, Contents c) throws IOException {
        writeModel(tmp, c.weights(), c.lora(), c.adapterConfig(), c.baseModel());
        if (c.valueHead() != null) {
            writeSingle(tmp.resolve("value_head.safetensors"), c.valueHead());
        }
        writeSingle(tmp.resolve("optimizer.safetensors"), c.optimizer());
        for (var e : c.jsonFiles().entrySet()) {
            Json.MAPPER.writeValue(tmp.resolve(e.getKey()).toFile(), e.getValue());
        }
        State state = c.state();
        ObjectNode st = Json.MAPPER.createObjectNode();
        st.put("step", state.step());
        st.put("optimizer_steps", state.optimizerSteps());
        st.put("kl_coef", state.klCoef());
        st.put("base_model", c.baseModel().toAbsolutePath().toString());
        st.put("lora", c.lora());
        st.set("extra", Json.MAPPER.valueToTree(state.extra()));
        Json.writeAtomically(tmp.resolve("trainer_state.json"), Json.MAPPER.writerWithDefaultPrettyPrinter().writeValueAsString(st));
    }

    /**
     * A model another program can load from {@code dir}: a PEFT adapter (adapter_model.safetensors and
     * adapter_config.json) or HF weights in their own dtype, beside the base model's config and
     * tokenizer files. Checkpoints hold one; so does each weight version given to rollout servers.
     */
    public static void writeModel(Path dir, Map<String, NDArray> weights, boolean lora, Map<String, Object> adapterConfig,
                                  Path baseModel) throws IOException {
        if (lora) {
            SafeTensors.write(dir.resolve("adapter"), weights, "F32", Long.MAX_VALUE);
            Files.move(dir.resolve("adapter/model.safetensors"), dir.resolve("adapter_model.safetensors"));
            deleteTree(dir.resolve("adapter"));
            Json.writeAtomically(dir.resolve("adapter_config.json"), Json.MAPPER.writerWithDefaultPrettyPrinter()
                    .writeValueAsString(adapterConfig));
        } else {
            SafeTensors.write(dir, weights, dtypeOf(weights), 4L << 30);
        }
        for (String f : MODEL_FILES) {
            if (Files.isRegularFile(baseModel.resolve(f))) {
                Files.copy(baseModel.resolve(f), dir.resolve(f), StandardCopyOption.REPLACE_EXISTING);
            }
        }
    }

    /** Tensor bytes plus the copied model files: what a checkpoint of {@code c} takes on disk, roughly. */
    private static long bytesNeeded(Contents c) {
        long b = 0;
        for (Map<String, NDArray> m : java.util.Arrays.asList(c.weights(), c.valueHead(), c.optimizer())) {
            if (m != null) {
                for (NDArray a : m.values()) {
                    b += a.size() * (c.lora() || m != c.weights() ? 4 : a.getDataType().getNumOfBytes());
                }
            }
        }
        for (String f : MODEL_FILES) {
            try {
                b += Files.isRegularFile(c.baseModel().resolve(f)) ? Files.size(c.baseModel().resolve(f)) : 0;
            } catch (IOException ignored) {
                // unreadable here means it was not copied either
            }
        }
        return b;
    }

    private static long usableSpace(Path p) {
        try {
            return Files.getFileStore(p).getUsableSpace();
        } catch (IOException e) {
            return -1;
        }
    }

    private static String mib(long bytes) {
        return bytes < 0 ? "an unknown amount" : String.format(java.util.Locale.ROOT, "%.1f MiB", bytes / (double) (1 << 20));
    }

    /** The checkpoint's manifest: every other file's size and CRC32C, written last. */
    static final String MANIFEST = "manifest.json";

    private static void writeManifest(Path dir) throws IOException {
        ObjectNode files = Json.MAPPER.createObjectNode();
        try (Stream<Path> s = Files.list(dir)) {
            for (Path f : s.filter(Files::isRegularFile).sorted().toList()) {
                ObjectNode e = files.putObject(f.getFileName().toString());
                e.put("bytes", Files.size(f));
                e.put("crc32c", crc32c(f));
            }
        }
        ObjectNode m = Json.MAPPER.createObjectNode();
        m.set("files", files);
        Json.writeAtomically(dir.resolve(MANIFEST), Json.MAPPER.writerWithDefaultPrettyPrinter().writeValueAsString(m));
    }

    private static String crc32c(Path f) throws IOException {
        java.util.zip.CRC32C crc = new java.util.zip.CRC32C();
        byte[] buf = new byte[1 << 20];
        try (var in = Files.newInputStream(f)) {
            for (int n; (n = in.read(buf)) > 0; ) {
                crc.update(buf, 0, n);
            }
        }
        return String.format("%08x", crc.getValue());
    }

    /**
     * Why a checkpoint folder cannot be trusted, or null when every file its manifest lists is there
     * with the recorded size and checksum. A folder without a manifest is judged by trainer_state.json alone.
     */
    public static String damage(Path ckpt) {
        if (!Files.isRegularFile(ckpt.resolve("trainer_state.json"))) {
            return "trainer_state.json is missing";
        }
        if (!Files.isRegularFile(ckpt.resolve(MANIFEST))) {
            return null;
        }
        JsonNode files;
        try {
            files = Json.MAPPER.readTree(Files.readString(ckpt.resolve(MANIFEST))).path("files");
        } catch (IOException | RuntimeException e) {
            return MANIFEST + " is not valid JSON";
        }
        for (var it = files.fields(); it.hasNext(); ) {
            var e = it.next();
            Path f = ckpt.resolve(e.getKey());
            try {
                if (!Files.isRegularFile(f)) {
                    return e.getKey() + " is missing";
                }
                long size = Files.size(f), want = e.getValue().path("bytes").asLong(-1);
                if (size != want) {
                    return e.getKey() + " has " + size + " bytes, the manifest says " + want;
                }
                if (!crc32c(f).equals(e.getValue().path("crc32c").asText())) {
                    return e.getKey() + " does not match its checksum";
                }
            } catch (IOException ex) {
                return e.getKey() + " cannot be read (" + ex.getMessage() + ")";
            }
        }
        return null;
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

    /**
     * The checkpoint to resume from. A checkpoint folder named directly must be intact (else one user
     * error). A run folder gives its newest intact checkpoint, starting from the one {@code latest}
     * names; each one skipped is reported through {@code warn} with the reason.
     */
    public static Path resolve(Path p, java.util.function.Consumer<String> warn) {
        if (Files.isRegularFile(p.resolve("trainer_state.json")) || Files.isRegularFile(p.resolve(MANIFEST))) {
            String why = damage(p);
            if (why != null) {
                throw new UserError("checkpoint " + p + " is damaged: " + why);
            }
            return p;
        }
        Path root = p.resolve("checkpoints");
        List<Path> candidates = new ArrayList<>();
        try {
            Path latest = root.resolve("latest");
            if (Files.isRegularFile(latest)) {
                candidates.add(root.resolve(Files.readString(latest).strip()));
            }
            if (Files.isDirectory(root)) {
                try (Stream<Path> s = Files.list(root)) {
                    s.filter(x -> x.getFileName().toString().matches("step-\\d+")).sorted(Comparator.reverseOrder())
                            .filter(x -> !candidates.contains(x)).forEach(candidates::add);
                }
            }
        } catch (IOException | java.nio.file.InvalidPathException e) {
            throw new UserError(root + ": cannot read (" + e.getMessage() + ")");
        }
        for (Path c : candidates) {
            String why = Files.isDirectory(c) ? damage(c) : "it does not exist";
            if (why == null) {
                return c;
            }
            warn.accept("warning: skipping checkpoint " + c + ": " + why);
        }
        throw new UserError("--resume " + p + ": no intact checkpoint there (expected trainer_state.json, or checkpoints/step-*)");
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

    /**
     * Whether {@code name}, an entry of OUTPUT/checkpoints/, is one {@link #save} writes: a step folder, its
     * temp folder left by a crash, or the {@code latest} pointer and its temp file. Replacing a run removes
     * these and no other entry, so whatever else is kept there is never deleted.
     */
    public static boolean written(String name) {
        return name.matches("step-\\d+(\\.tmp)?") || name.equals("latest") || name.equals("latest.tmp");
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
