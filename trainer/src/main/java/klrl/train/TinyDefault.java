package klrl.train;

import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.function.Consumer;
import klrl.checkpoint.Checkpoints;
import klrl.config.TrainConfig;
import klrl.data.Dataset;
import klrl.data.Example;
import klrl.data.Prompts;
import klrl.model.Decoder;
import klrl.model.SafeTensors;
import klrl.model.TinyModel;
import klrl.model.Tokenizer;

/**
 * The built-in default model: init-tiny (qwen2 architecture, fixed seed) followed by a short,
 * deterministic supervised warm-up on the bundled arithmetic train set and a share of its
 * out-of-domain families, leaving a policy that has the answer format and partial skill — room for RL to show it learns. Built once into the cache
 * folder ($KLRL_CACHE, default ~/.cache/klrl) and reused.
 */
public final class TinyDefault {
    private TinyDefault() {}

    public static final String VERSION = "tiny-sft-v3";
    public static final TinyModel.Spec SPEC = new TinyModel.Spec("qwen2", 128, 3, 4, 2, 384, 7, "F32", Long.MAX_VALUE, false, 0.02, 0);
    public static final int SFT_STEPS = 800, SFT_BATCH = 32;
    public static final double SFT_LR = 1e-3;

    public static Path cacheDir() {
        String env = System.getenv("KLRL_CACHE");
        return env != null && !env.isBlank() ? Path.of(env) : Path.of(System.getProperty("user.home"), ".cache", "klrl");
    }

    /** The built-in model's shape (its config.json), without building it: from the cache, or written to a temporary folder. */
    public static klrl.model.ModelConfig shape() {
        Path built = cacheDir().resolve(VERSION).resolve("config.json");
        try {
            if (Files.isRegularFile(built)) {
                return klrl.model.ModelConfig.load(built.getParent());
            }
            Path tmp = Files.createTempDirectory("klrl-tiny-shape");
            try {
                TinyModel.write(tmp, SPEC);
                return klrl.model.ModelConfig.load(tmp);
            } finally {
                Checkpoints.deleteTree(tmp);
            }
        } catch (IOException e) {
            throw new java.io.UncheckedIOException(e);
        }
    }

    public static synchronized Path ensure(Consumer<String> log) throws IOException {
        Path dir = cacheDir().resolve(VERSION);
        if (Files.isRegularFile(dir.resolve("READY"))) {
            return dir;
        }
        log.accept("building the default tiny model (init-tiny + " + SFT_STEPS + " SFT steps) into " + dir);
        Path tmp = cacheDir().resolve(VERSION + ".tmp-" + ProcessHandle.current().pid());
        Checkpoints.deleteTree(tmp);
        TinyModel.write(tmp, SPEC);
        try (NDManager root = NDManager.newBaseManager("PyTorch");
             Tokenizer tok = Tokenizer.load(tmp);
             Decoder model = Decoder.load(tmp, root, DataType.FLOAT32)) {
            Prompts prompts = new Prompts(tok, TrainConfig.Data.defaults().promptFormat());
            // the sums RL trains on, plus a small share of the out-of-domain families (see Arithmetic)
            List<Example> data = new java.util.ArrayList<>(Dataset.load(Dataset.BUNDLED_TRAIN, null, null));
            data.addAll(Dataset.load(Dataset.BUNDLED_WARMUP_FAMILIES, null, null));
            double loss = Sft.run(model, tok, prompts, data, SFT_STEPS, SFT_BATCH, SFT_LR, 11, root,
                    s -> { if ((s + 1) % 100 == 0) { log.accept("  sft step " + (s + 1) + "/" + SFT_STEPS); } });
            SafeTensors.write(tmp, model.parameters(), "F32", Long.MAX_VALUE);
            log.accept(String.format("  sft done, final loss %.3f", loss));
        }
        Files.writeString(tmp.resolve("READY"), VERSION + "\n");
        Files.createDirectories(dir.getParent());
        if (!Files.isRegularFile(dir.resolve("READY"))) {
            Checkpoints.deleteTree(dir);
            Files.move(tmp, dir, java.nio.file.StandardCopyOption.ATOMIC_MOVE);
        } else {
            Checkpoints.deleteTree(tmp);
        }
        return dir;
    }
}
