package klrl.cli;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import com.fasterxml.jackson.databind.JsonNode;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.Callable;
import klrl.checkpoint.Checkpoints;
import klrl.model.Lora;
import klrl.model.SafeTensors;
import klrl.util.Json;
import klrl.util.UserError;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

@Command(name = "export", mixinStandardHelpOptions = true,
        description = "Write a complete HF model folder from a checkpoint (LoRA adapters merged into the weights).")
public final class ExportCommand implements Callable<Integer> {
    @Option(names = "--checkpoint", required = true, description = "checkpoint folder, or a run folder (its latest)") Path checkpoint;
    @Option(names = "--out", required = true) Path out;
    @Option(names = "--dtype", defaultValue = "F32", description = "F32, F16 or BF16 on disk (default: ${DEFAULT-VALUE})") String dtype;

    @Override
    public Integer call() throws Exception {
        Path ckpt = Checkpoints.resolve(checkpoint, System.err::println);
        JsonNode st = Checkpoints.state(ckpt);
        boolean lora = st.path("lora").asBoolean(false);
        Path base = lora ? Path.of(st.get("base_model").asText()) : ckpt;
        if (lora && !Files.isRegularFile(base.resolve("config.json"))) {
            throw new UserError(ckpt + "/trainer_state.json: base_model " + base + " is not a model folder");
        }
        Files.createDirectories(out);
        try (NDManager m = NDManager.newBaseManager("PyTorch")) {
            Map<String, NDArray> weights = new LinkedHashMap<>();
            SafeTensors.index(base).forEach((k, e) -> weights.put(k, SafeTensors.load(e, m, DataType.FLOAT32)));
            if (lora) {
                Lora.mergeInto(weights, Checkpoints.readAll(ckpt.resolve("adapter_model.safetensors"), m),
                        Json.read(ckpt.resolve("adapter_config.json")), ckpt + "/adapter_model.safetensors");
            }
            for (String f : Checkpoints.MODEL_FILES) {
                Path src = (lora ? base : ckpt).resolve(f);
                if (Files.isRegularFile(src)) {
                    Files.copy(src, out.resolve(f), StandardCopyOption.REPLACE_EXISTING);
                }
            }
            SafeTensors.write(out, weights, dtype.toUpperCase(), 4L << 30);
        }
        System.out.println(out);
        return 0;
    }
}
