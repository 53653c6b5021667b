package klrl.train;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import klrl.checkpoint.Checkpoints;
import klrl.util.UserError;

/**
 * One run per output folder. A trainer starting without --resume in a folder that already holds a
 * run (any of the files a run writes) is refused, naming what is there and the two ways on, so an
 * earlier run is never overwritten or mixed with a new one; --overwrite removes the earlier run's
 * files first, so that the folder holds the new run alone.
 */
final class RunFolder {
    private RunFolder() {}

    /** What a run writes into its output folder (train.log is the grid's, around the run, and stays). */
    static final List<String> RUN_FILES = List.of("metrics.jsonl", "samples.jsonl", "config.yaml", "checkpoints");

    /**
     * Checks {@code out} (already locked by this trainer) before anything is written to it.
     *
     * @param resumed   the run folder being continued, or null for a new run
     * @param overwrite replace a run found in {@code out} (its files are removed now)
     */
    static void claim(Path out, Path resumed, boolean overwrite) throws IOException {
        List<Path> found = runFiles(out);
        if (found.isEmpty() || (resumed != null && sameFolder(out, resumed))) {
            return;
        }
        if (overwrite) {
            for (Path p : found) {
                Checkpoints.deleteTree(p);
            }
            return;
        }
        String what = describe(out);
        throw new UserError(resumed != null
                ? out + " holds another run (" + what + ") than the one resumed from " + resumed
                        + ": give an empty output_dir, or --overwrite to replace it"
                : out + " holds a run (" + what + "): --resume " + out + " continues it, another --output-dir starts a new"
                        + " one, --overwrite replaces it");
    }

    /** The run files present in {@code out}. */
    static List<Path> runFiles(Path out) throws IOException {
        List<Path> found = new ArrayList<>();
        if (!Files.isDirectory(out)) {
            return found;
        }
        for (String f : RUN_FILES) {
            if (Files.exists(out.resolve(f))) {
                found.add(out.resolve(f));
            }
        }
        try (var s = Files.list(out)) {
            s.filter(p -> p.getFileName().toString().startsWith(klrl.metrics.TensorBoardLog.PREFIX)).sorted().forEach(found::add);
        }
        return found;
    }

    /** "last step 12, checkpoint step-000012", or what else there is when no step finished. */
    private static String describe(Path out) throws IOException {
        long last = -1;
        Path metrics = out.resolve("metrics.jsonl");
        if (Files.isRegularFile(metrics)) {
            for (String l : Files.readAllLines(metrics)) {
                try {
                    var n = klrl.util.Json.MAPPER.readTree(l);
                    if (n != null && n.has("reward_mean")) {
                        last = Math.max(last, n.path("step").asLong());
                    }
                } catch (IOException torn) {
                    // a line cut by a kill: the lines before it tell the step
                }
            }
        }
        Path latest = out.resolve("checkpoints/latest");
        String ckpt = Files.isRegularFile(latest) ? "checkpoint " + Files.readString(latest).strip() : "no checkpoint";
        return (last >= 0 ? "last step " + last : "no step finished") + ", " + ckpt;
    }

    /** Whether the run resumed from (its folder, or a checkpoint inside it) is the one in {@code out}. */
    private static boolean sameFolder(Path out, Path resumed) throws IOException {
        Path o = out.toRealPath(), r = resumed.toAbsolutePath().normalize();
        Path run = r.getParent() == null ? null : r.getParent().getParent(); // RUN/checkpoints/step-N
        for (Path p : new Path[] {r, run}) {
            if (p != null && Files.exists(p) && p.toRealPath().equals(o)) {
                return true;
            }
        }
        return false;
    }
}
