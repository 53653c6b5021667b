package klrl.train;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import java.util.List;
import klrl.config.TrainConfig;
import klrl.data.Dataset;
import klrl.data.Example;
import klrl.data.Prompts;
import klrl.model.Decoder;
import klrl.model.Tokenizer;
import klrl.rollout.RolloutEngine;
import klrl.rollout.Sample;
import klrl.rollout.SamplingParams;
import klrl.run.TinyDefault;
import org.junit.jupiter.api.Test;

/** The training forward must see exactly the distribution the sampler drew from (ratio ≡ 1 on-policy). */
class PolicyForwardTest {
    @Test
    void trainingForwardReproducesSamplerLogprobs() throws Exception {
        var dir = TinyDefault.ensure(s -> { });
        klrl.util.Runtime.noGradOutsideCollectors();
        try (NDManager root = NDManager.newBaseManager("PyTorch");
             Tokenizer tok = Tokenizer.load(dir);
             Decoder model = Decoder.load(dir, root, DataType.FLOAT32)) {
            Prompts prompts = new Prompts(tok, TrainConfig.Data.defaults().promptFormat());
            List<Example> data = Dataset.load(Dataset.BUNDLED_TRAIN, null, null).subList(0, 6);
            List<long[]> ids = data.stream().map(prompts::ids).toList();
            for (float temp : new float[] {1.0f, 0.7f}) {
                List<Sample> samples = new RolloutEngine(model, tok.eosIds(), tok::decode)
                        .generate(ids, new SamplingParams(12, temp, 1, 0, 4, List.of(), 1), root);
                SequenceBatch b = SequenceBatch.of(samples.stream().map(Sample::promptIds).toList(),
                        samples.stream().map(Sample::responseIds).toList(), (int) tok.padId());
                try (NDManager m = root.newSubManager()) {
                    float[] lp = PolicyForward.run(model, b, m, temp).logp().toFloatArray();
                    double worst = 0;
                    for (int i = 0; i < samples.size(); i++) {
                        float[] s = samples.get(i).logprobs();
                        for (int k = 0; k < s.length; k++) {
                            worst = Math.max(worst, Math.abs(s[k] - lp[i * b.r() + k]));
                        }
                    }
                    assertTrue(worst < 1e-4, "T=" + temp + ": max |sampler − training forward| = " + worst);
                    // a packed micro-batch of some rows, out of order: each row from column 0, as wide as its longest row
                    int[] idx = {5, 0, 3};
                    SequenceBatch packed = b.rows(idx);
                    int longest = 0;
                    for (int i : idx) {
                        longest = Math.max(longest, samples.get(i).promptIds().length + samples.get(i).responseIds().length);
                    }
                    assertEquals(longest, packed.p() + packed.r());
                    assertTrue(longest < b.p() + b.r() || b.p() == packed.starts()[0], "packing saved nothing: " + longest);
                    float[] plp = PolicyForward.run(model, packed, m, temp).logp().toFloatArray();
                    double worstPacked = 0;
                    for (int k = 0; k < idx.length; k++) {
                        assertEquals(samples.get(idx[k]).promptIds().length, packed.starts()[k]);
                        float[] s = samples.get(idx[k]).logprobs();
                        for (int j = 0; j < s.length; j++) {
                            worstPacked = Math.max(worstPacked, Math.abs(s[j] - plp[k * packed.r() + j]));
                        }
                    }
                    assertTrue(worstPacked < 1e-4, "T=" + temp + ": max |sampler − packed forward| = " + worstPacked);
                }
            }
        }
    }
}
