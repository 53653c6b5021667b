package klrl.cli;

import java.nio.file.Path;
import picocli.CommandLine.Option;

/** --model / --device / --dtype, shared by the commands that load a model. */
public final class ModelOptions {
    @Option(names = "--model", required = true, description = "HF model folder (config.json, *.safetensors, tokenizer.json)")
    Path model;

    @Option(names = "--device", defaultValue = "cpu", description = "cpu, cuda, cuda:N or auto (default: ${DEFAULT-VALUE})")
    String device;

    @Option(names = "--dtype", defaultValue = "float32", description = "float32 or float16 (default: ${DEFAULT-VALUE})")
    String dtype;
}
