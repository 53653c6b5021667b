package klrl.cli;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import ai.djl.pytorch.engine.PtNDArray;
import ai.djl.pytorch.jni.JniUtils;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.nio.file.Path;
import java.util.concurrent.Callable;
import klrl.model.Decoder;
import klrl.util.Json;
import klrl.util.Npy;
import klrl.util.Runtime;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

@Command(name = "logprobs", mixinStandardHelpOptions = true,
        description = "Print the log-probability of each token given its prefix (the first has none: null).")
public final class LogprobsCommand implements Callable<Integer> {
    @Mixin ModelOptions opts;
    @Option(names = "--input-ids", required = true, description = "comma-separated token ids") String inputIds;
    @Option(names = "--logits-out", description = "write float32 logits [len(ids), vocab] as .npy") Path logitsOut;

    @Override
    public Integer call() throws Exception {
        try (NDManager root = NDManager.newBaseManager(Runtime.device(opts.device), "PyTorch");
             Decoder model = Decoder.load(opts.model, root, Runtime.dtype(opts.dtype))) {
            long[] ids = Ids.parse(inputIds, "--input-ids", model.config.vocabSize());
            int t = ids.length;
            try (NDManager m = root.newSubManager()) {
                NDArray logits = model.logits(m, ids);
                NDArray logp = JniUtils.logSoftmax((PtNDArray) logits, 1, DataType.FLOAT32);
                float[] lp = logp.toFloatArray();
                ObjectNode outJson = Json.MAPPER.createObjectNode();
                ArrayNode idsNode = outJson.putArray("token_ids");
                ArrayNode lps = outJson.putArray("logprobs");
                int v = model.config.vocabSize();
                for (int i = 0; i < t; i++) {
                    idsNode.add(ids[i]);
                    if (i == 0) {
                        lps.addNull();
                    } else {
                        lps.add(lp[(i - 1) * v + (int) ids[i]]);
                    }
                }
                if (logitsOut != null) {
                    Npy.writeFloat32(logitsOut, logits.toDevice(ai.djl.Device.cpu(), false).toFloatArray(), t, v);
                }
                System.out.println(Json.write(outJson));
            }
        }
        return 0;
    }
}
