package klrl.rewards;

import java.util.Map;

/** 1 when the completion puts exactly one final answer in a balanced \boxed{…}, else 0. */
public final class FormatReward implements Reward {
    @Override
    public Score score(String prompt, String completion, String gold) {
        String b = Extractor.lastBoxed(completion);
        boolean ok = b != null && !b.isBlank() && completion.indexOf("\\boxed") == completion.lastIndexOf("\\boxed");
        return new Score(ok ? 1.0 : 0.0, Map.of("formatted", ok));
    }
}
