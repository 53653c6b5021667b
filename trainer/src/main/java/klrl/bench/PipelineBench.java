package klrl.bench;

import com.fasterxml.jackson.databind.node.ObjectNode;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import klrl.config.ConfigLoader;
import klrl.config.TrainConfig;
import klrl.model.TinyModel;
import klrl.plan.MemoryPlan;
import klrl.train.SequenceBatch;
import klrl.train.VarlenUpdate;

/**
 * The layers-pipeline benchmark: a reference pass and an update with the layers placed over CPU
 * "devices", one group at a time (the previous behaviour) against pipelined, with the plain default
 * (one device) beside them.
 */
final class PipelineBench {
    private PipelineBench() {}

    /**
     * {@code bench --only layers-pipeline}: a Qwen2-shaped model of 27 M parameters (512 hidden, 8 layers,
     * vocab 4096: lm_head costs about one layer, so the parameter-balanced split of 4 + 4 layers is also
     * about even in compute), equal rows of 128 prompt + 384 response tokens, one row per micro-batch, one
     * mini-batch. 8 and 16 micro-batches over 2 devices: one device with all libtorch threads, sequential
     * placement with all of them on its one computing thread, and pipelined with the threads shared out
     * (one per stage on 2 cores): the same threads on every side. Also sequential placement with one
     * thread, each device one core as each GPU is a fixed unit of its own: what a node sees (one device
     * computing, the others idle). Then 16 over 4 devices, pipelined (on 2
     * cores its time is only indicative: 4 stage threads share them). Settings alternate, three times each; the
     * median of each number is reported.
     */
    static void run(ObjectNode o) throws Exception {
        TinyModel.Spec spec = new TinyModel.Spec("qwen2", 512, 8, 8, 2, 1408, 5, "F32", Long.MAX_VALUE, false, 0.02, 4096);
        Path dir = Files.createTempDirectory("klrl-pipeline");
        try {
            TinyModel.write(dir, spec);
            o.put("setting", "qwen2-shaped 512 hidden, 8 layers, 8 heads / 2 kv heads, vocab 4096 (random weights), fp32; rows of"
                    + " 128 prompt + 384 response tokens, one per micro-batch, one mini-batch; GRPO, k1 in the reward; medians of three"
                    + " alternating runs per setting; libtorch threads: all on the one computing thread (one device, sequential),"
                    + " cores ÷ stages per stage thread (pipelined), one (sequential_one_thread: each device one core)");
            int threads = ai.djl.pytorch.jni.JniUtils.getNumThreads();
            o.put("libtorch_threads", threads);
            Map<String, Map<String, Object>> settings = new LinkedHashMap<>();
            settings.put("one_device", Map.of("model.device", "cpu"));
            Map<String, Object> sequential = Map.of("model.device", "cpu,cpu", "train.parallel", "layers", "train.pipeline", false);
            settings.put("layers_sequential", sequential);
            settings.put("layers_sequential_one_thread", sequential); // each device one core, as each GPU is its own
            settings.put("layers_pipelined", Map.of("model.device", "cpu,cpu", "train.parallel", "layers"));
            SplittableRandom rnd = new SplittableRandom(23);
            for (int micro : new int[] {8, 16}) {
                SequenceBatch rows = rows(rnd, micro);
                ObjectNode n = o.putObject(micro + "_micro_batches");
                // warm-up: kernels, allocator, JIT
                VarlenUpdate.timed(config(dir, micro, Map.of("model.device", "cpu")), dir, rows.slice(0, 2), 1, 0, false, 2);
                Map<String, List<VarlenUpdate.Timing>> runs = new LinkedHashMap<>();
                for (int round = 0; round < 3; round++) {
                    for (var s : settings.entrySet()) {
                        ai.djl.pytorch.jni.JniUtils.setNumThreads(s.getKey().endsWith("one_thread") ? 1 : threads);
                        VarlenUpdate.Timing t = VarlenUpdate.timed(config(dir, micro, s.getValue()), dir, rows, 1, 0, false, micro);
                        ai.djl.pytorch.jni.JniUtils.setNumThreads(threads);
                        System.err.printf(java.util.Locale.ROOT, "layers-pipeline %d %s: reference %.2f s, update %.2f s %s%n", micro,
                                s.getKey(), t.secondsReference(), t.secondsUpdate(), t.busy());
                        runs.computeIfAbsent(s.getKey(), k -> new ArrayList<>()).add(t);
                    }
                }
                Map<String, VarlenUpdate.Timing> best = new LinkedHashMap<>();
                runs.forEach((k, ts) -> best.put(k, median(ts)));
                best.forEach((k, t) -> put(n.putObject(k), t));
                n.put("expected_busy_2_stages", MemoryPlan.busy(2, micro));
                double seqUpdate = best.get("layers_sequential").secondsUpdate(), pipeUpdate = best.get("layers_pipelined").secondsUpdate();
                n.put("update_speedup_pipelined_vs_sequential", seqUpdate / pipeUpdate);
                n.put("reference_speedup_pipelined_vs_sequential",
                        best.get("layers_sequential").secondsReference() / best.get("layers_pipelined").secondsReference());
                n.put("update_speedup_pipelined_vs_sequential_one_thread", best.get("layers_sequential_one_thread").secondsUpdate() / pipeUpdate);
                n.put("reference_speedup_pipelined_vs_sequential_one_thread",
                        best.get("layers_sequential_one_thread").secondsReference() / best.get("layers_pipelined").secondsReference());
                n.put("update_speedup_pipelined_vs_one_device", best.get("one_device").secondsUpdate() / pipeUpdate);
            }
            // 4 stages: the busy fraction (time indicative on 2 cores)
            SequenceBatch rows = rows(rnd, 16);
            VarlenUpdate.Timing four = VarlenUpdate.timed(config(dir, 16, Map.of("model.device", String.join(",",
                    Collections.nCopies(4, "cpu")), "train.parallel", "layers")), dir, rows, 1, 0, false, 16);
            ObjectNode f = o.putObject("16_micro_batches_4_devices");
            put(f, four);
            f.put("expected_busy_4_stages", MemoryPlan.busy(4, 16));
        } finally {
            klrl.checkpoint.Checkpoints.deleteTree(dir);
        }
    }

    /** Each number's median over the runs (busy fractions included), field by field. */
    private static VarlenUpdate.Timing median(List<VarlenUpdate.Timing> ts) {
        Map<String, Double> busy = new LinkedHashMap<>();
        ts.get(0).busy().keySet().forEach(k -> busy.put(k, BenchCommand.median(ts.stream().map(t -> t.busy().get(k)).toList())));
        return new VarlenUpdate.Timing(BenchCommand.median(ts.stream().map(VarlenUpdate.Timing::secondsReference).toList()),
                BenchCommand.median(ts.stream().map(VarlenUpdate.Timing::secondsUpdate).toList()), ts.get(0).padding(), ts.get(0).micro(), busy);
    }

    private static void put(ObjectNode n, VarlenUpdate.Timing t) {
        n.put("seconds_reference", t.secondsReference());
        n.put("seconds_update", t.secondsUpdate());
        n.put("micro_batches", t.micro());
        t.busy().forEach(n::put);
    }

    private static TrainConfig config(Path dir, int rows, Map<String, Object> extra) {
        Map<String, Object> s = new LinkedHashMap<>(Map.of("model.path", dir.toString(), "output_dir", dir.resolve("out").toString(),
                "train.batch_size", 1, "train.mini_batch_size", 1, "rollout.n", rows, "data.max_prompt_tokens", 128,
                "rollout.max_new_tokens", 384, "train.micro_batch_size", 1));
        s.putAll(extra);
        return ConfigLoader.load(null, s);
    }

    /** {@code n} rows of 128 prompt and 384 response tokens (random ids). */
    private static SequenceBatch rows(SplittableRandom rnd, int n) {
        List<long[]> prompts = new ArrayList<>(), responses = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            prompts.add(rnd.longs(128, 1, 4000).toArray());
            responses.add(rnd.longs(384, 1, 4000).toArray());
        }
        return SequenceBatch.of(prompts, responses, 0);
    }
}
