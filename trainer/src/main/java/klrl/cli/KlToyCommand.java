package klrl.cli;

import ai.djl.ndarray.NDManager;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Callable;
import klrl.toy.KlToy;
import klrl.util.Json;
import klrl.util.UserError;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

@Command(name = "kl-toy", mixinStandardHelpOptions = true,
        description = "Exact expected KL gradients of every estimator × placement, with the vanilla and the GSPO policy loss, on a tabular policy, vs ∇KL(π‖π_ref).")
public final class KlToyCommand implements Callable<Integer> {
    @Option(names = "--spec", description = "JSON {vocab, length, policy, reference[, sampler]}: sampler = the logits the"
            + " sequences are drawn from (shape of policy); then every row comes per rollout correction (none, token, sequence)")
    Path spec;
    @Option(names = "--vocab", defaultValue = "3") int vocab;
    @Option(names = "--length", defaultValue = "3") int length;
    @Option(names = "--seed", defaultValue = "0", description = "draws the tables (without --spec) and the Monte-Carlo samples") long seed;
    @Option(names = "--samples", defaultValue = "0", description = "also a Monte-Carlo estimate from N samples") int samples;
    @Option(names = "--json", description = "print JSON (default: a table)") boolean json;
    @Option(names = "--sampler-temperature", paramLabel = "T",
            description = "draw the sequences from the policy at temperature T (its logits / T) instead of the policy itself")
    Double samplerTemperature;

    @Override
    public Integer call() {
        if (samples < 0) {
            throw new UserError("--samples must be ≥ 0");
        }
        KlToy.Spec s = spec != null ? KlToy.Spec.read(spec) : KlToy.Spec.random(vocab, length, seed);
        String sampler = s.sampler() != null ? "spec" : null;
        if (samplerTemperature != null) {
            if (sampler != null) {
                throw new UserError(spec + ": field 'sampler' is given and --sampler-temperature would replace it; give one or the other");
            }
            s = s.withSamplerTemperature(samplerTemperature);
            sampler = "temperature " + java.math.BigDecimal.valueOf(samplerTemperature).stripTrailingZeros().toPlainString();
        }
        KlToy.Result r;
        try (NDManager m = NDManager.newBaseManager("PyTorch")) {
            r = new KlToy(s).run(samples, seed, m);
        }
        if (json) {
            ObjectNode o = Json.MAPPER.createObjectNode();
            o.put("vocab", s.vocab());
            o.put("length", s.length());
            if (sampler != null) {
                o.put("sampler", sampler);
            }
            o.put("kl", r.kl());
            o.put("grad_norm", r.gradNorm());
            ArrayNode rows = o.putArray("rows");
            for (KlToy.Row row : r.rows()) {
                ObjectNode x = rows.addObject();
                x.put("policy_loss", row.policyLoss());
                x.put("estimator", row.estimator());
                x.put("placement", row.placement());
                if (row.correction() != null) {
                    x.put("correction", row.correction());
                }
                x.put("relative_bias", row.relativeBias());
                x.put("cosine", row.cosine());
                x.put("variance", row.variance());
                if (row.mcRelativeBias() != null) {
                    x.put("mc_relative_bias", row.mcRelativeBias());
                    x.put("mc_variance", row.mcVariance());
                }
            }
            System.out.println(Json.write(o));
        } else {
            printTable(r, sampler);
        }
        return 0;
    }

    private void printTable(KlToy.Result r, String sampler) {
        System.out.printf("KL(π‖π_ref) = %.6g   ‖∇KL‖ = %.6g%n", r.kl(), r.gradNorm());
        if (sampler != null) {
            System.out.printf("sampler μ: %s; sequences drawn from μ, corrections weight by π/μ (untruncated)%n", sampler);
        }
        String corr = sampler != null ? String.format(" %-10s", "correction") : "";
        System.out.printf("%-7s %-4s %-14s%s %14s %10s %12s%s%n", "loss", "est", "placement", corr, "relative_bias", "cosine", "variance",
                samples > 0 ? "  mc_relative_bias  mc_variance" : "");
        List<String> unbiased = new ArrayList<>();
        for (KlToy.Row row : r.rows()) {
            String c = row.correction() == null ? "" : String.format(" %-10s", row.correction());
            System.out.printf("%-7s %-4s %-14s%s %14.6g %10.6f %12.6g%s%n", row.policyLoss(), row.estimator(), row.placement(), c,
                    row.relativeBias(), row.cosine(), row.variance(), row.mcRelativeBias() == null ? ""
                            : String.format("  %16.6g %12.6g", row.mcRelativeBias(), row.mcVariance()));
            if (row.relativeBias() < 1e-9) {
                unbiased.add(row.policyLoss() + " " + row.estimator() + "-" + row.placement() + " " + row.correction());
            }
        }
        if (sampler != null) {
            // the point of a sampler: which placement × correction still estimates ∇KL when μ ≠ π
            System.out.println("unbiased under the sampler (relative_bias < 1e-9): "
                    + (unbiased.isEmpty() ? "none" : String.join(", ", unbiased)));
        }
    }
}
