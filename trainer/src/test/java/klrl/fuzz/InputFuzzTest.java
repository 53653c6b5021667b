package klrl.fuzz;

import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import com.code_intelligence.jazzer.api.FuzzedDataProvider;
import com.code_intelligence.jazzer.junit.FuzzTest;
import com.code_intelligence.jazzer.mutation.annotation.NotNull;
import com.fasterxml.jackson.databind.JsonNode;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import klrl.TestPaths;
import klrl.config.ConfigLoader;
import klrl.data.Dataset;
import klrl.model.ChatTemplate;
import klrl.model.SafeTensors;
import klrl.util.Json;
import klrl.util.UserError;

/**
 * What a user hands the trainer, fuzzed: safetensors files and shard indexes, YAML configs, dataset
 * rows (JSONL and parquet), chat-template messages and templates. The contract is one clear line: any input either loads
 * or fails with a {@link UserError}; every other exception is a finding. Plain test runs replay the
 * seeds and findings in src/test/resources/klrl/fuzz/InputFuzzTestInputs/; {@code JAZZER_FUZZ=1 mvn
 * test -pl trainer -Dtest=InputFuzzTest#METHOD} fuzzes one target (src/site/markdown/fuzzing.md).
 */
class InputFuzzTest {
    private static final Path DIR = scratch();

    private static Path scratch() {
        try {
            return Files.createTempDirectory("klrl-fuzz");
        } catch (java.io.IOException e) {
            throw new java.io.UncheckedIOException(e);
        }
    }

    /** Runs f; a user error is the expected outcome for bad input, anything else propagates as a finding. */
    private static void expectLoadOrUserError(ThrowingRunnable f) throws Exception {
        try {
            f.run();
        } catch (UserError e) {
            if (e.getMessage() == null || e.getMessage().isBlank()) {
                throw new AssertionError("a user error without a message", e);
            }
        }
    }

    interface ThrowingRunnable {
        void run() throws Exception;
    }

    @FuzzTest(maxDuration = "10m")
    void safetensorsFile(@NotNull byte[] bytes) throws Exception {
        Path dir = Files.createDirectories(DIR.resolve("st"));
        Path f = dir.resolve("model.safetensors");
        Files.write(f, bytes);
        expectLoadOrUserError(() -> {
            try (NDManager m = NDManager.newBaseManager("PyTorch")) {
                for (SafeTensors.Entry e : SafeTensors.index(dir).values()) {
                    SafeTensors.load(e, m, DataType.FLOAT32).close();
                }
            }
        });
    }

    @FuzzTest(maxDuration = "10m")
    void safetensorsShardIndex(@NotNull String json) throws Exception {
        Path dir = Files.createDirectories(DIR.resolve("idx"));
        Files.deleteIfExists(dir.resolve("model.safetensors"));
        Files.writeString(dir.resolve("model.safetensors.index.json"), json);
        expectLoadOrUserError(() -> SafeTensors.index(dir));
    }

    @FuzzTest(maxDuration = "10m")
    void configYaml(@NotNull String yaml) throws Exception {
        Path f = DIR.resolve("config.yaml");
        Files.writeString(f, yaml);
        expectLoadOrUserError(() -> ConfigLoader.load(f.toString(), Map.of()));
    }

    @FuzzTest(maxDuration = "10m")
    void datasetRows(@NotNull String jsonl) throws Exception {
        Path f = DIR.resolve("rows.jsonl");
        Files.writeString(f, jsonl);
        expectLoadOrUserError(() -> Dataset.load(f.toString(), null, null));
    }

    @FuzzTest(maxDuration = "10m")
    void datasetParquet(@NotNull byte[] bytes) throws Exception {
        Path f = DIR.resolve("rows.parquet");
        Files.write(f, bytes);
        expectLoadOrUserError(() -> Dataset.load(f.toString(), null, null));
    }

    private static final List<ChatTemplate> TEMPLATES = List.of(template("qwen2.5"), template("llama3.1"));

    private static ChatTemplate template(String model) {
        JsonNode tc = Json.read(TestPaths.model(model).resolve("tokenizer_config.json"));
        return new ChatTemplate(tc.get("chat_template").asText(), Map.of("bos_token", "<s>", "eos_token", "</s>"));
    }

    @FuzzTest(maxDuration = "10m")
    void chatTemplateMessages(FuzzedDataProvider data) throws Exception {
        ChatTemplate t = TEMPLATES.get(data.consumeInt(0, TEMPLATES.size() - 1));
        boolean generationPrompt = data.consumeBoolean();
        List<ChatTemplate.Message> msgs = new ArrayList<>();
        int n = data.consumeInt(0, 6);
        for (int i = 0; i < n; i++) {
            String role = data.pickValue(new String[] {"system", "user", "assistant", "tool", "ipython", ""});
            msgs.add(new ChatTemplate.Message(data.consumeBoolean() ? role : data.consumeString(12), data.consumeString(300)));
        }
        expectLoadOrUserError(() -> t.render(msgs, generationPrompt));
    }

    @FuzzTest(maxDuration = "10m")
    void chatTemplateSource(FuzzedDataProvider data) throws Exception {
        String content = data.consumeString(100);
        ChatTemplate t = new ChatTemplate(data.consumeRemainingAsString(), Map.of("bos_token", "<s>", "eos_token", "</s>"));
        expectLoadOrUserError(() -> t.render(List.of(new ChatTemplate.Message("user", content)), true));
    }
}
