package klrl.cli;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.BufferedReader;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.Callable;
import klrl.rewards.Extractor;
import klrl.rewards.Verifier;
import klrl.util.Json;
import klrl.util.UserError;
import picocli.CommandLine.ArgGroup;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

@Command(name = "verify", mixinStandardHelpOptions = true,
        description = "Check answers with the math verifier: one pair, or a JSONL file of {\"gold\",\"pred\"} lines.")
public final class VerifyCommand implements Callable<Integer> {

    static final class One {
        @Option(names = "--gold", required = true, description = "gold answer or solution (its last \\boxed{} is used)") String gold;
        @Option(names = "--pred", required = true, description = "a completion or a bare answer") String pred;
    }

    static final class Input {
        @ArgGroup(exclusive = false) One one;
        @Option(names = "--jsonl", description = "file with one {\"gold\":…, \"pred\":…} per line; results go to stdout in order")
        Path jsonl;
    }

    @ArgGroup(exclusive = true, multiplicity = "1") Input input;
    @Option(names = "--timeout-ms", defaultValue = "1000", description = "per-check time limit (default: ${DEFAULT-VALUE})") long timeoutMs;
    @Option(names = "--grader", defaultValue = "math", description = "math (this verifier), hendrycks (verl's MATH grader),"
            + " dapo (DAPO's \"Answer:\" rule), or the class name of a klrl.rewards.Reward on the class path (default: ${DEFAULT-VALUE})")
    String grader;
    @Option(names = "--explain", description = "for one pair: what each side was extracted and normalised to, how it was read"
            + " (as math text, or text), which rule found the completion's answer and where, and why the verdict"
            + " (the math grader; other graders print their details)") boolean explain;

    @Override
    public Integer call() throws IOException {
        Verifier v = new Verifier(timeoutMs, Extractor.DEFAULT);
        klrl.rewards.Reward other;
        try {
            other = grader.equals("math") || grader.equals("math-verify") ? null : klrl.rewards.Rewards.byName(grader);
        } catch (IllegalArgumentException e) {
            throw new UserError("--grader: " + e.getMessage());
        }
        if (explain && input.one == null) {
            throw new UserError("--explain explains one pair: use it with --gold and --pred");
        }
        if (input.one != null) {
            if (other != null) {
                klrl.rewards.Reward.Score s = other.score("", input.one.pred, input.one.gold);
                System.out.println(explain ? Json.write(Json.MAPPER.valueToTree(s.details())) : String.valueOf(s.value() > 0));
            } else if (explain) {
                v.explain(input.one.gold, input.one.pred).forEach((k, x) -> System.out.println(k + ": " + x));
            } else {
                System.out.println(v.verify(input.one.gold, input.one.pred).correct());
            }
            return 0;
        }
        if (!Files.isRegularFile(input.jsonl)) {
            throw new UserError(input.jsonl + ": file not found");
        }
        long n = 0, correct = 0, t0 = System.nanoTime();
        StringBuilder out = new StringBuilder();
        try (BufferedReader r = Files.newBufferedReader(input.jsonl, StandardCharsets.UTF_8)) {
            String line;
            int lineNo = 0;
            while ((line = r.readLine()) != null) {
                lineNo++;
                if (line.isBlank()) {
                    continue;
                }
                JsonNode j;
                try {
                    j = Json.MAPPER.readTree(line);
                } catch (IOException e) {
                    throw new UserError(input.jsonl + ":" + lineNo + ": not valid JSON");
                }
                if (!j.path("gold").isValueNode() || !j.path("pred").isValueNode() || j.path("gold").isNull()) {
                    throw new UserError(input.jsonl + ":" + lineNo + ": expected {\"gold\": …, \"pred\": …}");
                }
                ObjectNode o = Json.MAPPER.createObjectNode();
                boolean ok;
                if (other != null) {
                    klrl.rewards.Reward.Score s = other.score("", j.get("pred").asText(), j.get("gold").asText());
                    ok = s.value() > 0;
                    o.put("correct", ok);
                    o.set("details", Json.MAPPER.valueToTree(s.details()));
                } else {
                    Verifier.Result res = v.verify(j.get("gold").asText(), j.get("pred").asText());
                    ok = res.correct();
                    o.put("correct", ok);
                    o.put("extracted", res.extracted());
                }
                out.append(Json.write(o)).append('\n');
                n++;
                correct += ok ? 1 : 0;
                if (out.length() > 1 << 16) {
                    System.out.print(out);
                    out.setLength(0);
                }
            }
        }
        System.out.print(out);
        System.out.flush();
        double secs = (System.nanoTime() - t0) / 1e9;
        System.err.printf("verified %d, correct %d (%.1f%%), timeouts %d, %.0f checks/s%n", n, correct,
                n == 0 ? 0 : 100.0 * correct / n, v.timeouts(), n / Math.max(secs, 1e-9));
        return 0;
    }
}
