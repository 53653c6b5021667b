package klrl.cli;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
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
    @Option(names = "--head-chunk-tokens", description = "the output head over this many positions at a time (0: all at once;"
            + " default ${DEFAULT-VALUE}): no [len(ids), vocab] tensor is held, the .npy is written chunk by chunk")
    int headChunk = Decoder.DEFAULT_HEAD_CHUNK;

    @Override
    public Integer call() throws Exception {
        try (NDManager root = NDManager.newBaseManager(Runtime.device(opts.device), "PyTorch");
             Decoder model = Decoder.load(opts.model, root, Runtime.dtype(opts.dtype))) {
            long[] ids = Ids.parse(inputIds, "--input-ids", model.config.vocabSize());
            int t = ids.length;
            if (headChunk < 0) {
                throw new klrl.util.UserError("--head-chunk-tokens must be ≥ 0 (0 = all positions at once), got " + headChunk);
            }
            int v = model.config.vocabSize(), c = headChunk == 0 ? t : headChunk;
            float[] lp = new float[t];
            try (NDManager m = root.newSubManager();
                 Npy.Writer npy = logitsOut == null ? null : new Npy.Writer(logitsOut, t, v)) {
                NDArray h = model.hidden(m, ids);                                                  // [T,E]
                for (int from = 0; from < t; from += c) { // position i's logits predict token i + 1
                    int to = Math.min(t, from + c);
                    try (NDManager cm = m.newSubManager()) {
                        NDArray hc = JniUtils.slice((PtNDArray) h, 0, from, to, 1);
                        hc.attach(cm);
                        NDArray logits = model.logits(hc);                                         // [C,V]
                        long[] next = new long[to - from]; // the token each position predicts (the last predicts none: 0, unread)
                        for (int i = from; i < to && i + 1 < t; i++) {
                            next[i - from] = ids[i + 1];
                        }
                        float[] logp = JniUtils.logSoftmax((PtNDArray) logits, 1, DataType.FLOAT32)
                                .gather(cm.create(next, new ai.djl.ndarray.types.Shape(to - from, 1)), 1).toFloatArray();
                        for (int i = from; i < to && i + 1 < t; i++) {
                            lp[i + 1] = logp[i - from];
                        }
                        if (npy != null) { // in row blocks of at most 2^26 values: a Java array holds fewer than 2^31
                            int rows = Math.max(1, (1 << 26) / v);
                            for (int r = 0; r < to - from; r += rows) {
                                NDArray part = JniUtils.slice((PtNDArray) logits, 0, r, Math.min(to - from, r + rows), 1);
                                part.attach(cm);
                                npy.write(part.toDevice(ai.djl.Device.cpu(), false).toFloatArray());
                            }
                        }
                    }
                }
                if (npy != null) {
                    npy.commit();
                }
            }
            ObjectNode outJson = Json.MAPPER.createObjectNode();
            ArrayNode idsNode = outJson.putArray("token_ids");
            ArrayNode lps = outJson.putArray("logprobs");
            for (int i = 0; i < t; i++) {
                idsNode.add(ids[i]);
                if (i == 0) {
                    lps.addNull();
                } else {
                    lps.add(lp[i]);
                }
            }
            System.out.println(Json.write(outJson));
        }
        return 0;
    }
}
