package klrl.rewards;

import java.util.LinkedHashMap;
import java.util.Map;

/** 1 when the completion's final answer is equivalent to the gold answer, else 0. */
public final class MathReward implements Reward {
    private final Verifier verifier;

    public MathReward() {
        this(new Verifier());
    }

    public MathReward(Verifier verifier) {
        this.verifier = verifier;
    }

    public Verifier verifier() {
        return verifier;
    }

    @Override
    public Score score(String prompt, String completion, String gold) {
        Verifier.Result r = verifier.verify(gold, completion);
        Map<String, Object> d = new LinkedHashMap<>();
        d.put("correct", r.correct());
        d.put("extracted", r.extracted());
        d.put("timed_out", r.timedOut());
        return new Score(r.correct() ? 1.0 : 0.0, d);
    }
}
