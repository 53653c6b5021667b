package klrl.train;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.function.IntConsumer;
import klrl.data.Example;
import klrl.data.Prompts;
import klrl.model.Decoder;
import klrl.model.Tokenizer;
import klrl.optim.AdamW;

/**
 * Supervised warm-up: maximise log p("\boxed{gold}" + EOS | prompt) over seeded mini-batches. Used to
 * give the built-in tiny model the answer format (and some skill) before RL, deterministically.
 */
public final class Sft {
    private Sft() {}

    public static double run(Decoder model, Tokenizer tok, Prompts prompts, List<Example> data, int steps, int batch,
                             double lr, long seed, NDManager root, IntConsumer progress) {
        klrl.util.Runtime.noGradOutsideCollectors();
        long eos = tok.eosIds().get(0);
        double last = Double.NaN;
        try (AdamW opt = new AdamW(model.parameters(), java.util.Map.of(), new AdamW.Hyper(0.9, 0.98, 1e-8, 0.0), root);
             klrl.util.Progress bar = klrl.util.Progress.start("warm-up", steps, "steps")) {
            SplittableRandom rng = new SplittableRandom(seed);
            for (int s = 0; s < steps; s++) {
                List<long[]> ps = new ArrayList<>(), rs = new ArrayList<>();
                for (int i = 0; i < batch; i++) {
                    Example e = data.get(rng.nextInt(data.size()));
                    ps.add(prompts.ids(e));
                    long[] ans = tok.encode("\\boxed{" + e.goldAnswer() + "}");
                    long[] withEos = java.util.Arrays.copyOf(ans, ans.length + 1);
                    withEos[ans.length] = eos;
                    rs.add(withEos);
                }
                SequenceBatch b = SequenceBatch.of(ps, rs, (int) tok.padId());
                try (NDManager m = root.newSubManager()) {
                    try (klrl.util.Grad gc = klrl.util.Grad.record()) {
                        PolicyForward.Out out = PolicyForward.run(model, b, m, 1f);
                        NDArray mask = b.mask(m);
                        NDArray loss = out.logp().mul(mask).sum().div(mask.sum()).neg();
                        last = loss.getFloat();
                        gc.backward(loss);
                    }
                    // cosine decay to 10%: the warm-up should end settled, not mid-stride
                    double lrNow = lr * (0.1 + 0.9 * 0.5 * (1 + Math.cos(Math.PI * s / steps)));
                    opt.step(lrNow, 1.0);
                }
                bar.step(1);
                if (progress != null) {
                    progress.accept(s);
                }
            }
        }
        for (NDArray p : model.parameters().values()) {
            p.setRequiresGradient(false);
        }
        return last;
    }
}
