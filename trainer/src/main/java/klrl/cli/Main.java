package klrl.cli;

import klrl.util.UserError;
import picocli.CommandLine;
import picocli.CommandLine.Command;

/** Entry point of trainer.jar: {@code train} is the default command. */
@Command(name = "trainer.jar", mixinStandardHelpOptions = true, version = "klrl 0.1.0",
        description = "KL-correct RLVR trainer for LLMs on DJL/PyTorch.",
        subcommands = {TrainCommand.class, EvalCommand.class, PlanCommand.class, klrl.bench.BenchCommand.class, SftCommand.class, ExportCommand.class, ReportCommand.class, VerifyCommand.class, KlToyCommand.class, InitTinyCommand.class, LogprobsCommand.class, TemplateCommand.class, GenerateCommand.class, GpuCheckCommand.class, GridCommand.class, RolloutServerCheckCommand.class})
public final class Main {

    public static void main(String[] args) {
        klrl.util.Processes.endWithStarter(System.getenv());
        Integer relaunched = Launcher.relaunchIfNeeded(args, new CommandLine(new Main()).getSubcommands().keySet());
        System.exit(relaunched != null ? relaunched : run(args));
    }

    /** Runs a command line and returns the exit code; user errors print one line, no stack trace. */
    public static int run(String... args) {
        System.setProperty("ai.djl.offline", "true");
        // train is the default command: anything that is not a subcommand name goes to it
        CommandLine probe = new CommandLine(new Main());
        boolean sub = args.length > 0 && probe.getSubcommands().containsKey(args[0]);
        boolean help = args.length > 0 && (args[0].equals("--help") || args[0].equals("-h") || args[0].equals("--version")
                || args[0].equals("-V") || args[0].equals("help"));
        if (!sub && !help) {
            String[] withTrain = new String[args.length + 1];
            withTrain[0] = "train";
            System.arraycopy(args, 0, withTrain, 1, args.length);
            args = withTrain;
        }
        CommandLine cl = new CommandLine(new Main());
        cl.setExecutionExceptionHandler((ex, cmd, parsed) -> {
            Throwable t = ex;
            while (t.getCause() != null && !(t instanceof UserError)) {
                t = t.getCause();
            }
            if (t instanceof UserError) {
                cmd.getErr().println("error: " + t.getMessage());
                return 2;
            }
            String msg = String.valueOf(t.getMessage());
            // Java heap, CUDA ("CUDA out of memory") and libtorch's CPU allocator ("can't allocate memory")
            if (t instanceof OutOfMemoryError || msg.contains("out of memory") || msg.contains("can't allocate memory")) {
                String what = msg.contains("DefaultCPUAllocator") ? msg.substring(msg.indexOf("DefaultCPUAllocator")) : msg;
                cmd.getErr().println("error: out of memory (" + klrl.util.Json.firstLine(what).strip()
                        + "); lower rollout.n, train.batch_size, train.micro_batch_size or the max lengths (`plan` estimates"
                        + " the memory); the checkpoints written so far are intact");
                return 3;
            }
            throw ex;
        });
        return cl.execute(args);
    }
}
