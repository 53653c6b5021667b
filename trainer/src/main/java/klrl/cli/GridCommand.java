package klrl.cli;

import java.nio.file.Path;
import java.util.concurrent.Callable;
import klrl.grid.GridRunner;
import klrl.grid.GridSpec;
import klrl.grid.GridSummary;
import klrl.util.UserError;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

@Command(name = "grid", mixinStandardHelpOptions = true,
        description = {"Run a grid of training runs (cells × β × settings × seeds) and summarise it: summary.md,"
                + " summary.json and figures in --out. Resumable: run it again to finish what is missing.",
            "Presets: paper-on-cpu (the KL grid of src/site/markdown/paper-on-cpu.md), paper-on-cpu-smoke."})
public final class GridCommand implements Callable<Integer> {
    @Option(names = "--spec", required = true, description = "grid YAML file or preset name") String spec;
    @Option(names = "--out", description = "grid folder (default: runs/grid-NAME)") Path out;
    @Option(names = "--jobs", defaultValue = "1", description = "runs at a time; the cores are shared between them (default: ${DEFAULT-VALUE})")
    int jobs;
    @Option(names = "--summary-only", description = "only (re)write the summary and figures from the runs there") boolean summaryOnly;
    @Option(names = "--list", description = "print the runs the spec names and exit") boolean list;

    @Override
    public Integer call() throws Exception {
        if (jobs < 1) {
            throw new UserError("--jobs must be ≥ 1");
        }
        String text = GridSpec.source(spec);
        GridSpec g = GridSpec.parse(text, spec);
        if (out == null) {
            String name = Path.of(spec).getFileName().toString().replaceFirst("\\.ya?ml$", "");
            out = Path.of("runs", "grid-" + name);
        }
        if (list) {
            g.runs().forEach(r -> System.out.println(r.name() + "  " + String.join(" ", r.assignments())));
            return 0;
        }
        int failed = 0;
        if (!summaryOnly) {
            System.err.println("grid " + spec + ": " + g.runs().size() + " runs into " + out + ", " + jobs + " at a time");
            failed = GridRunner.run(g, text, out, jobs, System.err::println);
        }
        System.out.print(GridSummary.write(g, out));
        System.err.println("summary: " + out.resolve("summary.md") + ", " + out.resolve("summary.json") + ", figures in " + out.resolve("figures"));
        if (failed > 0) {
            System.err.println("error: " + failed + " run(s) failed (see their train.log); run the same command again to retry them");
            return 1;
        }
        return 0;
    }
}
