package klrl.rewards;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;

/** The named graders give what verl's own code gives on the same inputs (graders_cases.tsv). */
class GradersTest {
    @Test
    void hendrycksAndDapoMatchVerl() throws IOException {
        List<String> failures = new ArrayList<>();
        int n = 0;
        try (var in = GradersTest.class.getResourceAsStream("/graders_cases.tsv")) {
            for (String line : new String(in.readAllBytes(), StandardCharsets.UTF_8).split("\n")) {
                if (line.startsWith("#") || line.isBlank()) {
                    continue;
                }
                String[] f = line.split("\t", -1);
                assertEquals(5, f.length, line);
                String completion = f[0].replace('\u23ce', '\n'), gold = f[1].replace('\u23ce', '\n');
                double h = new HendrycksReward().score("", completion, gold).value();
                Reward.Score d = new DapoReward().score("", completion, gold);
                if (h != Double.parseDouble(f[2])) {
                    failures.add("hendrycks " + h + " != " + f[2] + " for " + f[0] + " | " + f[1]);
                }
                if (d.value() != Double.parseDouble(f[3]) || !d.details().get("extracted").equals(f[4].replace('\u23ce', '\n'))) {
                    failures.add("dapo " + d.value() + " " + d.details().get("extracted") + " != " + f[3] + " " + f[4] + " for " + f[0]);
                }
                n++;
            }
        }
        assertTrue(n >= 38, "cases: " + n);
        assertTrue(failures.isEmpty(), String.join("\n", failures));
        assertTrue(Rewards.byName("hendrycks") instanceof HendrycksReward && Rewards.byName("dapo") instanceof DapoReward
                && Rewards.byName("math-verify") instanceof MathReward);
    }
}
