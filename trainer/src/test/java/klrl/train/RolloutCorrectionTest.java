package klrl.train;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import klrl.rollout.remote.StandInServer;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The rollout correction against a server whose log-probs are not the trainer's: the SGLang stand-in
 * reports each token's log-prob shifted by 0, −1, −½ nats by position (a server's log-probs are never
 * positive), so π_old/μ is 1, e, e^½ on every third token — the weights are logged, truncated at the
 * threshold, rejected outside the band, change the update, and a lagged run resumes exactly.
 */
@Tag("e2e")
class RolloutCorrectionTest {
    @TempDir Path tmp;

    static final double[] SHIFT = {0.0, -1.0, -0.5};

    @BeforeAll
    static void model() throws Exception {
        TrainerTest.model();
    }

    Map<String, Object> onServer(StandInServer s, Path out, Object... kv) {
        Map<String, Object> o = new HashMap<>(Map.of("rollout.engine", "sglang", "rollout.urls", List.of(s.url()),
                "rollout.weights_dir", out.resolveSibling(out.getFileName() + "-weights").toString(), "train.max_steps", 2));
        for (int i = 0; i < kv.length; i += 2) {
            o.put((String) kv[i], kv[i + 1]);
        }
        return o;
    }

    static List<String> train(Path out, Map<String, Object> o, Path resume) throws Exception {
        List<String> log = new ArrayList<>();
        try (Trainer t = new Trainer(TrainerTest.small(out, o), resume, log::add)) {
            t.run(x -> { });
        }
        return log;
    }

    @Test
    void serverWeightsAreLoggedTruncatedRejectedAndChangeTheUpdate() throws Exception {
        Path token = tmp.resolve("token"), reject = tmp.resolve("reject"), none = tmp.resolve("none");
        List<String> log;
        try (StandInServer s = new StandInServer(StandInServer.Kind.SGLANG, TrainerTest.base)) {
            s.logprobShift = SHIFT;
            log = train(token, onServer(s, token), null);
            train(reject, onServer(s, reject, "algorithm.rollout_correction.rs", "token", "algorithm.rollout_correction.rs_threshold_lower", 1.2),
                    null);
            train(none, onServer(s, none, "algorithm.rollout_correction.is", "none"), null);
        }
        assertTrue(log.stream().anyMatch(l -> l.startsWith("rollout correction: token-level importance weights π_old/μ truncated at 2.0"
                + " (the default with sglang")), String.join("\n", log));
        JsonNode a = TrainerTest.stepLines(token).get(0), b = TrainerTest.stepLines(reject).get(0), c = TrainerTest.stepLines(none).get(0);
        // the shares of tokens at each shift, read back: e's are the clipped ones, and k1 = mean(μ − π_old) = −f_e − ½·f_h
        double fE = a.get("rollout_is_clipped_fraction").asDouble(), fH = 2 * (-a.get("rollout_mismatch_kl_k1").asDouble() - fE);
        double f1 = 1 - fE - fH;
        assertTrue(fE > 0.1 && fH > 0.1 && f1 > 0.1, a.toString());
        assertEquals(2.0, a.get("rollout_is_max").asDouble(), 1e-6, "e truncated to the threshold");
        assertEquals(1.0, a.get("rollout_is_min").asDouble(), 1e-4);
        assertEquals(f1 + fE * 2.0 + fH * Math.exp(0.5), a.get("rollout_is_mean").asDouble(), 1e-4);
        assertEquals(fE * (Math.E - 2) + fH * (Math.exp(0.5) - 1.5), a.get("rollout_mismatch_kl_k3").asDouble(), 1e-4);
        // the same first rollout rejected outside [1.2, 2]: 1 and e go, e^½ stays
        assertEquals(f1 + fE, b.get("rollout_rs_masked_fraction").asDouble(), 1e-6);
        assertEquals(a.get("reward_mean").asDouble(), b.get("reward_mean").asDouble());
        // weights enter the loss: the same rollout, another update
        assertEquals(a.get("reward_mean").asDouble(), c.get("reward_mean").asDouble());
        assertTrue(!c.has("rollout_is_mean") && c.has("rollout_mismatch_kl_k1"), c.toString());
        assertNotEquals(a.get("loss_policy").asDouble(), c.get("loss_policy").asDouble());
        assertNotEquals(a.get("grad_norm").asDouble(), b.get("grad_norm").asDouble());
    }

    @Test
    void aLaggedCorrectedRunResumesExactly() throws Exception {
        Path whole = tmp.resolve("whole"), cut = tmp.resolve("cut");
        try (StandInServer s = new StandInServer(StandInServer.Kind.SGLANG, TrainerTest.base)) {
            s.logprobShift = SHIFT;
            Object[] kv = {"algorithm.off_policy_lag", 1, "algorithm.rollout_correction.is", "sequence",
                    "algorithm.rollout_correction.rs", "geometric", "algorithm.rollout_correction.rs_threshold", 1.5};
            Map<String, Object> o = onServer(s, whole, kv);
            o.put("train.max_steps", 4);
            train(whole, o, null);
            // the checkpoint after step 2 holds the rollout of step 2, sampled by the server, with its log-probs
            train(cut, onServer(s, cut, kv), null);
            Map<String, Object> rest = onServer(s, cut, kv);
            rest.put("train.max_steps", 4);
            train(cut, rest, cut);
        }
        List<JsonNode> a = TrainerTest.stepLines(whole), b = TrainerTest.stepLines(cut);
        assertEquals(4, b.size());
        for (int i = 0; i < 4; i++) {
            Map<String, String> x = TrainerTest.comparable(a.get(i)), y = TrainerTest.comparable(b.get(i));
            x.remove("rollout_retries");
            y.remove("rollout_retries");
            assertEquals(x, y, "step " + (i + 1));
        }
        assertTrue(a.get(3).has("rollout_is_mean") && a.get(3).has("rollout_rs_masked_fraction"), a.get(3).toString());
        assertTrue(java.nio.file.Files.readString(cut.resolve("checkpoints/step-000004/rollout_queue.json")).contains("\"samplerLogprobs\""),
                "the queued rollout keeps the server's log-probs");
    }

    @Test
    void gspoWithDynamicSamplingOnAServerGetsSequenceWeightsOfTheTrainedBatch() throws Exception {
        Path run = tmp.resolve("gspo");
        List<String> log;
        try (StandInServer s = new StandInServer(StandInServer.Kind.SGLANG, TrainerTest.base)) {
            s.logprobShift = SHIFT;
            log = train(run, onServer(s, run, "algorithm.policy_loss", "gspo", "algorithm.loss_agg_mode", "seq-mean-token-mean",
                    "algorithm.clip_ratio_low", 3e-4, "algorithm.clip_ratio_high", 4e-4, "algorithm.filter_groups.enable", true,
                    "algorithm.filter_groups.max_gen_batches", 3), null);
        }
        assertTrue(log.stream().anyMatch(l -> l.startsWith("rollout correction: sequence-level importance weights π_old/μ truncated"
                + " at 2.0 (the default with sglang")), String.join("\n", log));
        for (JsonNode st : TrainerTest.stepLines(run)) {
            // every sequence of 3+ tokens carries e·e^½ = 4.5 or more before truncation: the regrouped batch kept μ
            assertTrue(st.get("rollout_is_clipped_fraction").asDouble() > 0.5, st.toString());
            assertEquals(2.0, st.get("rollout_is_max").asDouble(), 1e-6, st.toString());
            assertTrue(st.get("gen_batches").asInt() >= 1, st.toString());
        }
    }
}
