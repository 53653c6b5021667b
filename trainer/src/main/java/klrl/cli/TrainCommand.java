package klrl.cli;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import java.util.concurrent.CountDownLatch;
import klrl.config.ConfigLoader;
import klrl.config.TrainConfig;
import klrl.train.Trainer;
import klrl.util.UserError;
import picocli.CommandLine.ArgGroup;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

@Command(name = "train", mixinStandardHelpOptions = true, sortOptions = false,
        description = {"Train with RL (the default command). Flags override the YAML config.",
            "With no --config the tiny CPU preset runs: the built-in tiny model on bundled arithmetic data."})
public final class TrainCommand implements Callable<Integer> {

    @ArgGroup(validate = false, heading = "%nConfig and data%n", order = 1) Setup setup = new Setup();
    @ArgGroup(validate = false, heading = "%nAlgorithm%n", order = 2) Algo algo = new Algo();
    @ArgGroup(validate = false, heading = "%nKL regularizer%n", order = 3) Kl kl = new Kl();
    @ArgGroup(validate = false, heading = "%nBatch and optimisation%n", order = 4) Optim optim = new Optim();
    @ArgGroup(validate = false, heading = "%nRun%n", order = 5) Run run = new Run();

    static final class Setup {
        @Option(names = "--config", description = "YAML file or preset name (tiny-cpu, qwen2.5-7b-math, llama3.1-8b-math, grid-k1-reward, …)")
        String config;
        @Option(names = "--model", description = "HF model folder (default: the built-in tiny model)") String model;
        @Option(names = "--train-data", description = "training set: a JSONL or parquet file, a folder of them or a glob") String trainData;
        @Option(names = "--eval-data", description = "held-out set(s) as --train-data, comma-separated") String evalData;
        @Option(names = "--device", description = "cpu, cuda, cuda:N or auto") String device;
        @Option(names = "--devices", description = "GPUs to place the decoder layers across, e.g. 0,1,2,3 (model.device)")
        String devices;
        @Option(names = "--parallel", description = "with several devices: data (a replica on each), layers (layer groups"
                + " over them) or auto (data when a replica fits one device) — train.parallel") String parallel;
        @Option(names = "--reward-jar", description = "a jar with your reward class; name the class with --set train.reward=CLASS")
        String rewardJar;
        @Option(names = "--set", paramLabel = "KEY=VALUE", description = "any config key, dotted as in the YAML, e.g."
                + " --set model.lora.rank=64 --set rollout.max_new_tokens=1024 (repeatable; applied after the other flags)")
        List<String> set = new ArrayList<>();
    }

    static final class Algo {
        @Option(names = "--algo", description = "grpo, ppo, rloo or reinforce++") String algo;
        @Option(names = "--n", description = "samples per prompt") Integer n;
    }

    static final class Kl {
        @Option(names = "--kl", description = "estimator: k1, k2, k3, abs or full") String estimator;
        @Option(names = "--kl-in-reward", description = "−β·k_t in the token reward (unbiased for k1)") boolean reward;
        @Option(names = "--kl-in-loss", description = "β·agg(k_t) in the loss (verl/OpenRLHF's use_kl_loss)") boolean loss;
        @Option(names = "--kl-in-loss-unbiased", description = "in the loss plus the score-function correction") boolean unbiased;
        @Option(names = "--no-kl", description = "no KL term (k1/k3 still logged)") boolean none;
        @Option(names = "--kl-coef", description = "β") Double coef;

        /** The placement flag given, or null; more than one is an error. */
        String placement() {
            int n = (reward ? 1 : 0) + (loss ? 1 : 0) + (unbiased ? 1 : 0) + (none ? 1 : 0);
            if (n > 1) {
                throw new UserError("give at most one of --kl-in-reward, --kl-in-loss, --kl-in-loss-unbiased, --no-kl");
            }
            return n == 0 ? null : reward ? "reward" : loss ? "loss" : unbiased ? "loss-unbiased" : "none";
        }
    }

    static final class Optim {
        @Option(names = "--batch-size", description = "prompts per step") Integer batchSize;
        @Option(names = "--lr", description = "learning rate") Double lr;
        @Option(names = "--max-steps", description = "RL steps") Integer maxSteps;
        @Option(names = "--seed") Long seed;
    }

    static final class Run {
        @Option(names = "--output-dir", description = "where metrics.jsonl, config.yaml and checkpoints go") String outputDir;
        @Option(names = "--resume", description = "run folder or checkpoint folder to continue from") Path resume;
        @Option(names = "--overwrite", description = "replace a run already in the output folder (its files are removed first);"
                + " without it, starting where a run is is refused") boolean overwrite;
    }

    static TrainConfig config(TrainCommand c) {
        Map<String, Object> o = new LinkedHashMap<>();
        o.put("model.path", c.setup.model);
        if (c.setup.device != null && c.setup.devices != null) {
            throw new UserError("give --device or --devices, not both");
        }
        o.put("model.device", c.setup.devices != null ? c.setup.devices : c.setup.device);
        o.put("train.parallel", c.setup.parallel);
        o.put("data.train", c.setup.trainData);
        o.put("train.reward_jar", c.setup.rewardJar);
        o.put("data.eval", c.setup.evalData);
        o.put("algorithm.name", c.algo.algo);
        o.put("rollout.n", c.algo.n);
        o.put("kl.estimator", c.kl.estimator);
        o.put("kl.placement", c.kl.placement());
        o.put("kl.coef", c.kl.coef);
        o.put("train.batch_size", c.optim.batchSize);
        if (c.optim.batchSize != null) {
            o.put("train.mini_batch_size", c.optim.batchSize);
        }
        o.put("optim.lr", c.optim.lr);
        o.put("train.max_steps", c.optim.maxSteps);
        o.put("train.seed", c.optim.seed);
        o.put("output_dir", c.run.outputDir);
        if (c.run.resume != null && !java.nio.file.Files.exists(c.run.resume)) {
            throw new UserError("--resume " + c.run.resume + ": not found (give a run folder or one of its checkpoints)");
        }
        return ConfigLoader.load(c.setup.config != null ? c.setup.config : runConfig(c.run.resume), o, c.setup.set);
    }

    /**
     * The config a run saved (RUN/config.yaml), for a run folder or one of its checkpoints; null when
     * there is none (then the tiny-cpu default applies, as without --resume).
     */
    static String runConfig(Path resume) {
        if (resume == null) {
            return null;
        }
        for (Path p : new Path[] {resume, resume.getParent() == null ? null : resume.getParent().getParent()}) {
            if (p != null && java.nio.file.Files.isRegularFile(p.resolve("config.yaml"))) {
                return p.resolve("config.yaml").toString();
            }
        }
        return null;
    }

    @Override
    public Integer call() throws Exception {
        TrainConfig cfg = config(this);
        if (cfg.train().maxSteps() == 0) {
            throw new UserError("train.max_steps is 0: nothing to do");
        }
        try (Trainer t = new Trainer(cfg, run.resume, run.overwrite, System.err::println)) {
            // SIGTERM (preemptible nodes): finish the current step, checkpoint, exit cleanly.
            CountDownLatch done = new CountDownLatch(1);
            Thread hook = new Thread(() -> {
                t.requestStop();
                try {
                    done.await();
                } catch (InterruptedException ignored) {
                    Thread.currentThread().interrupt();
                }
            });
            java.lang.Runtime.getRuntime().addShutdownHook(hook);
            try {
                t.run(System.out::println);
            } finally {
                done.countDown();
            }
            try {
                java.lang.Runtime.getRuntime().removeShutdownHook(hook);
            } catch (IllegalStateException shuttingDown) {
                // the JVM is already exiting because of the signal; the checkpoint is written
            }
        }
        return 0;
    }
}
