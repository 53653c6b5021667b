package klrl.cli;

import java.nio.file.Path;
import java.util.concurrent.Callable;
import klrl.model.TinyModel;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

@Command(name = "init-tiny", mixinStandardHelpOptions = true,
        description = "Write a small HF-format model folder with seeded random weights (tests, CPU default).")
public final class InitTinyCommand implements Callable<Integer> {
    @Option(names = "--arch", required = true, description = "qwen2 or llama") String arch;
    @Option(names = "--out", required = true, description = "output folder") Path out;
    @Option(names = "--seed", defaultValue = "0") long seed;
    @Option(names = "--hidden", defaultValue = "64") int hidden;
    @Option(names = "--layers", defaultValue = "2") int layers;
    @Option(names = "--heads", defaultValue = "4") int heads;
    @Option(names = "--kv-heads", defaultValue = "2") int kvHeads;
    @Option(names = "--intermediate", defaultValue = "176") int intermediate;
    @Option(names = "--weights-dtype", defaultValue = "F32", description = "F32, F16 or BF16 on disk") String dtype;
    @Option(names = "--max-shard-bytes", defaultValue = "9223372036854775807",
            description = "shard the safetensors above this size (writes model.safetensors.index.json)") long shard;
    @Option(names = "--tied", description = "tie lm_head to the embeddings") boolean tied;
    @Option(names = "--init-std", defaultValue = "0.02", description = "std of the random weights") double initStd;
    @Option(names = "--vocab-size", defaultValue = "0", description = "config vocab_size (0 = just cover the tokenizer)") int vocab;

    @Override
    public Integer call() throws Exception {
        TinyModel.write(out, new TinyModel.Spec(arch, hidden, layers, heads, kvHeads, intermediate, seed,
                dtype.toUpperCase(), shard, tied, initStd, vocab));
        System.out.println(out);
        return 0;
    }
}
