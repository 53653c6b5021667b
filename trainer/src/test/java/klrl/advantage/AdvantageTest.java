package klrl.advantage;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.types.Shape;
import klrl.util.UserError;
import org.junit.jupiter.api.Test;

/** Every estimator on a small batch worked out by hand. */
class AdvantageTest extends klrl.WithManager {

    NDArray a(int rows, double... v) {
        return m.create(v, new Shape(rows, v.length / rows));
    }

    // 4 samples (two groups of 2), width 2; outcome reward on each last token; sample 3 has length 1
    final double[] rewards = {0, 1, 0, 0, 0, 1, 1, 0};
    final double[] mask = {1, 1, 1, 1, 1, 1, 1, 0};
    final int[] groups = {0, 0, 1, 1};
    final AdvantageEstimator.Config cfg = AdvantageEstimator.Config.defaults();

    double[] run(String name, AdvantageEstimator.Config c) {
        return AdvantageEstimator.parse(name).compute(a(4, rewards), a(4, mask), groups, null, c).advantages().toDoubleArray();
    }

    @Test
    void grpo() {
        // group 0 scores {1, 0}: mean ½, std (unbiased) √½ → ±½/√½ = ±0.7071; group 1 {1, 1}: std 0 → 0
        double z = 0.5 / (Math.sqrt(0.5) + 1e-6);
        assertArrayEquals(new double[] {z, z, -z, -z, 0, 0, 0, 0}, run("grpo", cfg), 1e-12);
        // Dr. GRPO: no std
        assertArrayEquals(new double[] {0.5, 0.5, -0.5, -0.5, 0, 0, 0, 0},
                run("grpo", new AdvantageEstimator.Config(false, 1, 1, 1e-6)), 1e-12);
    }

    @Test
    void grpoScaledByTheBatchStd() {
        // TRL's scale_rewards: batch: scores {1, 0, 1, 1}, std over the batch (unbiased) = ½; group means ½ and 1
        double std = 0.5, z = 0.5 / (std + 1e-6);
        assertArrayEquals(new double[] {z, z, -z, -z, 0, 0, 0, 0}, run("grpo", AdvantageEstimator.Config.of("batch", 1, 1)), 1e-12);
        assertArrayEquals(run("grpo", cfg), run("grpo", AdvantageEstimator.Config.of("group", 1, 1)), 0);
        assertArrayEquals(run("grpo", new AdvantageEstimator.Config(false, 1, 1, 1e-6)), run("grpo", AdvantageEstimator.Config.of("none", 1, 1)), 0);
    }

    @Test
    void reinforcePlusPlusBaseline() {
        // scores {1, 0 | 1, 1} minus the group mean → {½, −½ | 0, 0} on every token (7 masked entries:
        // ½ ½ −½ −½ 0 0 0), then whitened over them: mean 0, unbiased var = 4·¼/6 = 1/6
        double inv = 1 / Math.sqrt(1.0 / 6 + 1e-8), h = 0.5 * inv;
        assertArrayEquals(new double[] {h, h, -h, -h, 0, 0, 0, 0}, run("reinforce++-baseline", cfg), 1e-12);
        // verl's formula on a KL-shaped reward (scores are Σ_t r_t), re-computed here: centre by group, whiten
        double[] r = {-0.1, 1, -0.2, 0, 0.3, 1, 1, 0};
        double[] got = AdvantageEstimator.parse("reinforce++-baseline").compute(a(4, r), a(4, mask), groups, null, cfg)
                .advantages().toDoubleArray();
        double[] sc = {0.9, -0.2, 1.3, 1};
        double[] c = {sc[0] - (sc[0] + sc[1]) / 2, sc[1] - (sc[0] + sc[1]) / 2, sc[2] - (sc[2] + sc[3]) / 2, sc[3] - (sc[2] + sc[3]) / 2};
        double[] tok = new double[8];
        double n = 0, sum = 0;
        for (int i = 0; i < 8; i++) {
            tok[i] = c[i / 2] * mask[i];
            n += mask[i];
            sum += tok[i];
        }
        double mean = sum / n, ss = 0;
        for (int i = 0; i < 8; i++) {
            ss += (tok[i] - mean) * (tok[i] - mean) * mask[i];
        }
        double sd = Math.sqrt(ss / (n - 1) + 1e-8);
        double[] want = new double[8];
        for (int i = 0; i < 8; i++) {
            want[i] = (tok[i] - mean) / sd * mask[i];
        }
        assertArrayEquals(want, got, 1e-12);
    }

    @Test
    void rloo() {
        // s_i − mean of the others: group 0: 1−0, 0−1; group 1: 1−1, 1−1
        assertArrayEquals(new double[] {1, 1, -1, -1, 0, 0, 0, 0}, run("rloo", cfg), 1e-12);
    }

    @Test
    void reinforceHasNoBaseline() {
        assertArrayEquals(new double[] {1, 1, 0, 0, 1, 1, 1, 0}, run("reinforce", cfg), 1e-12);
    }

    @Test
    void reinforcePlusPlusReturnsToGoThenWhitens() {
        // with a KL-shaped token reward: returns-to-go (γ=1) per row
        double[] r = {-0.1, 1, -0.2, 0, 0.3, 1, 1, 0};
        AdvantageEstimator.Result res = AdvantageEstimator.parse("reinforce++").compute(a(4, r), a(4, mask), groups, null, cfg);
        double[] ret = {0.9, 1, -0.2, 0, 1.3, 1, 1, 0};
        assertArrayEquals(ret, res.returns().toDoubleArray(), 1e-12);
        // whiten over the 7 masked entries, Bessel-corrected
        double[] valid = {0.9, 1, -0.2, 0, 1.3, 1, 1};
        double mean = 0;
        for (double v : valid) {
            mean += v / 7;
        }
        double var = 0;
        for (double v : valid) {
            var += (v - mean) * (v - mean) / 6;
        }
        double[] want = new double[8];
        for (int i = 0; i < 7; i++) {
            want[i] = (valid[i] - mean) / Math.sqrt(var + 1e-8);
        }
        assertArrayEquals(want, res.advantages().toDoubleArray(), 1e-12);
    }

    @Test
    void gaeByHand() {
        // one row of 3 tokens (last is padding), γ = 0.9, λ = 0.8
        NDArray r = a(1, 0, 1, 0), mk = a(1, 1, 1, 0), v = a(1, 0.5, 0.2, 7.0);
        AdvantageEstimator.Config c = new AdvantageEstimator.Config(true, 0.9, 0.8, 1e-6);
        AdvantageEstimator.Result res = AdvantageEstimator.parse("gae").compute(r, mk, new int[] {0}, v, c);
        // t=1: δ = 1 + 0.9·0 − 0.2 = 0.8 (the padded value 7 is not bootstrapped), A1 = 0.8
        // t=0: δ = 0 + 0.9·0.2 − 0.5 = −0.32, A0 = −0.32 + 0.72·0.8 = 0.256
        assertArrayEquals(new double[] {0.256 + 0.5, 0.8 + 0.2, 0}, java.util.Arrays.copyOf(res.returns().toDoubleArray(), 2 + 1), 1e-12);
        double mean = (0.256 + 0.8) / 2, sd = Math.sqrt(((0.256 - mean) * (0.256 - mean) + (0.8 - mean) * (0.8 - mean)) / 1);
        assertArrayEquals(new double[] {(0.256 - mean) / Math.sqrt(sd * sd + 1e-8), (0.8 - mean) / Math.sqrt(sd * sd + 1e-8), 0},
                res.advantages().toDoubleArray(), 1e-12);
    }

    @Test
    void unknownEstimatorAndMissingCriticAreClear() {
        assertThrows(UserError.class, () -> AdvantageEstimator.parse("ppo"));
        assertThrows(UserError.class, () -> run("gae", cfg));
    }
}
