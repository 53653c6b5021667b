package klrl.cli;

import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.Callable;
import klrl.checkpoint.Checkpoints;
import klrl.config.TrainConfig;
import klrl.data.Dataset;
import klrl.data.Prompts;
import klrl.model.Decoder;
import klrl.model.SafeTensors;
import klrl.model.Tokenizer;
import klrl.train.Sft;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

@Command(name = "sft", mixinStandardHelpOptions = true,
        description = "Supervised warm-up: learn \\boxed{answer} on a JSONL set; writes a complete HF model folder.")
public final class SftCommand implements Callable<Integer> {
    @Option(names = "--model", required = true) Path model;
    @Option(names = "--out", required = true) Path out;
    @Option(names = "--data", defaultValue = Dataset.BUNDLED_TRAIN, description = "JSONL (default: bundled arithmetic)") String data;
    @Option(names = "--steps", defaultValue = "300") int steps;
    @Option(names = "--batch-size", defaultValue = "32") int batch;
    @Option(names = "--lr", defaultValue = "3e-3") double lr;
    @Option(names = "--seed", defaultValue = "11") long seed;

    @Override
    public Integer call() throws Exception {
        Files.createDirectories(out);
        for (String f : Checkpoints.MODEL_FILES) {
            if (Files.isRegularFile(model.resolve(f)) && !model.equals(out)) {
                Files.copy(model.resolve(f), out.resolve(f), java.nio.file.StandardCopyOption.REPLACE_EXISTING);
            }
        }
        try (NDManager root = NDManager.newBaseManager("PyTorch");
             Tokenizer tok = Tokenizer.load(model);
             Decoder m = Decoder.load(model, root, DataType.FLOAT32)) {
            double loss = Sft.run(m, tok, new Prompts(tok, TrainConfig.Data.defaults().promptFormat()), Dataset.load(data, null, null),
                    steps, batch, lr, seed, root, s -> { });
            Files.deleteIfExists(out.resolve("model.safetensors.index.json"));
            SafeTensors.write(out, m.parameters(), "F32", Long.MAX_VALUE);
            System.out.printf("final loss %.4f%n", loss);
        }
        return 0;
    }
}
