package klrl.model;

import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import klrl.util.UserError;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Bad checkpoints give one clear error naming the file and the tensor. */
class WeightLoadingTest {
    @TempDir Path tmp;

    Path tiny(String arch) throws IOException {
        Path d = tmp.resolve(arch);
        TinyModel.write(d, TinyModel.Spec.defaults(arch, 3));
        return d;
    }

    UserError loadFails(Path dir) {
        try (NDManager m = NDManager.newBaseManager("PyTorch")) {
            return assertThrows(UserError.class, () -> Decoder.load(dir, m, DataType.FLOAT32));
        }
    }

    /** Rewrites the checkpoint with one tensor changed by {@code edit}. */
    void rewrite(Path dir, java.util.function.Consumer<Map<String, ai.djl.ndarray.NDArray>> edit) throws IOException {
        try (NDManager m = NDManager.newBaseManager("PyTorch")) {
            Map<String, ai.djl.ndarray.NDArray> t = new java.util.LinkedHashMap<>();
            for (var e : SafeTensors.index(dir).entrySet()) {
                t.put(e.getKey(), SafeTensors.load(e.getValue(), m, DataType.FLOAT32));
            }
            edit.accept(t);
            SafeTensors.write(dir, t, "F32", Long.MAX_VALUE);
        }
    }

    @Test
    void missingTensorIsNamed() throws IOException {
        Path d = tiny("qwen2");
        rewrite(d, t -> t.remove("model.layers.1.mlp.up_proj.weight"));
        UserError e = loadFails(d);
        assertTrue(e.getMessage().contains("'model.layers.1.mlp.up_proj.weight' is missing"), e.getMessage());
    }

    @Test
    void misShapedTensorIsNamed() throws IOException {
        Path d = tiny("llama");
        rewrite(d, t -> t.put("model.layers.0.self_attn.k_proj.weight", t.get("model.layers.0.self_attn.q_proj.weight")));
        UserError e = loadFails(d);
        assertTrue(e.getMessage().contains("'model.layers.0.self_attn.k_proj.weight' has shape [64, 64]"), e.getMessage());
    }

    @Test
    void unexpectedTensorIsNamed() throws IOException {
        Path d = tiny("llama");
        rewrite(d, t -> t.put("model.layers.0.self_attn.q_proj.bias", t.get("model.norm.weight")));
        UserError e = loadFails(d);
        assertTrue(e.getMessage().contains("unexpected tensor 'model.layers.0.self_attn.q_proj.bias'"), e.getMessage());
    }

    @Test
    void pickledCheckpointsAreRefused() throws IOException {
        Path d = tiny("qwen2");
        Files.delete(d.resolve("model.safetensors"));
        Files.write(d.resolve("pytorch_model.bin"), new byte[] {1, 2, 3});
        UserError e = loadFails(d);
        assertTrue(e.getMessage().contains("pickled") && e.getMessage().contains("refused"), e.getMessage());
    }

    @Test
    void truncatedFileIsReported() throws IOException {
        Path d = tiny("qwen2");
        Path f = d.resolve("model.safetensors");
        byte[] all = Files.readAllBytes(f);
        Files.write(f, java.util.Arrays.copyOf(all, all.length - 100));
        UserError e = loadFails(d);
        assertTrue(e.getMessage().contains("model.safetensors") && e.getMessage().contains("truncated"), e.getMessage());
    }

    @Test
    void badConfigFieldIsNamed() throws IOException {
        Path d = tiny("qwen2");
        Path c = d.resolve("config.json");
        Files.writeString(c, Files.readString(c).replace("\"hidden_size\" : 64", "\"hidden_size\" : \"big\""));
        UserError e = loadFails(d);
        assertTrue(e.getMessage().contains("config.json") && e.getMessage().contains("'hidden_size'"), e.getMessage());
    }

    @Test
    void unsupportedRopeScalingIsNamed() throws IOException {
        Path d = tiny("llama");
        Path c = d.resolve("config.json");
        Files.writeString(c, Files.readString(c).replace("\"llama3\"", "\"yarn\""));
        UserError e = loadFails(d);
        assertTrue(e.getMessage().contains("rope_type 'yarn'"), e.getMessage());
    }

    @Test
    void missingShardIsNamed() throws IOException {
        Path d = tmp.resolve("sharded");
        TinyModel.write(d, new TinyModel.Spec("qwen2", 64, 2, 4, 2, 176, 1, "BF16", 50_000, false, 0.02, 0));
        Path shard = d.resolve("model-00002-of-" + String.format("%05d", Files.list(d)
                .filter(p -> p.getFileName().toString().startsWith("model-")).count()) + ".safetensors");
        Files.delete(shard);
        UserError e = loadFails(d);
        assertTrue(e.getMessage().contains(shard.getFileName().toString()), e.getMessage());
    }
}
