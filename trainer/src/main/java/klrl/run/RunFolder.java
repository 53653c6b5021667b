package klrl.run;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.time.Instant;
import java.time.temporal.ChronoUnit;
import java.util.ArrayList;
import java.util.List;
import java.util.UUID;
import klrl.checkpoint.Checkpoints;
import klrl.metrics.TensorBoardLog;
import klrl.util.Json;
import klrl.util.UserError;

/**
 * One run per output folder, and nothing but a run's own files ever removed from it. A run marks its
 * folder with run.json when it starts. A new run in a folder a marked run holds is refused, naming
 * that run and the ways on, so an earlier run is never overwritten or mixed with a new one;
 * --overwrite removes that run's files first, by the names the trainer gives them.
 *
 * <p>A file's name does not say who wrote it: a user's own config.yaml and checkpoints/my-model look
 * like a run's. So a folder holding such names without the mark (another program's, or a run from
 * before run.json) is refused with or without --overwrite, and inside a marked run's checkpoints/ only
 * the entries {@link Checkpoints} writes are removed. Other files (notes, the grid's train.log around
 * a run, another program's event file without this trainer's suffix) neither stop a start nor are ever removed.
 *
 * <p>This trainer makes no symbolic links, so one among a run's names (checkpoints/ kept on another disk, say) is the
 * user's: --overwrite refuses it rather than delete through it out of the folder, or remove the link and leave the old
 * run's files where it pointed while the new run writes elsewhere than the user put it.
 */
public final class RunFolder {
    private RunFolder() {}

    /** The mark a run leaves in its folder when it starts: its id and start time. */
    static final String MARKER = "run.json";

    /**
     * What a run writes at the top of its folder besides run.json, its event files and checkpoints/
     * (train.log is the grid's, around the run, and stays).
     */
    static final List<String> RUN_FILES = List.of("metrics.jsonl", "samples.jsonl", "config.yaml");

    private static final String CHECKPOINTS = "checkpoints";

    /** How many names a refusal lists before it counts the rest, so that it stays one line. */
    private static final int LISTED = 6;

    /**
     * Refuses {@code out} (already locked by this trainer) when this run may not start there, removing
     * nothing: called first, so a refusal comes before the model loads.
     *
     * @param resumed   the run folder being continued, or null for a new run
     * @param overwrite replace a run found in {@code out} (its files are removed by {@link #claim})
     */
    public static void check(Path out, Path resumed, boolean overwrite) throws IOException {
        refuse(out, resumed, overwrite);
    }

    /**
     * Checks {@code out} again, removes the run it holds when {@code overwrite} says so, and marks it as
     * this run's: called once every check that can refuse the run passed (data, prompts, devices,
     * memory), before anything else is written to it.
     */
    public static void claim(Path out, Path resumed, boolean overwrite) throws IOException {
        Found f = refuse(out, resumed, overwrite);
        if (f == null) {
            return; // the same run goes on under its run.json (a run from before run.json has none, and resumes too)
        }
        for (Path p : f.own()) {
            Checkpoints.deleteTree(p);
        }
        Path ckpts = out.resolve(CHECKPOINTS);
        if (Files.isDirectory(ckpts, LinkOption.NOFOLLOW_LINKS) && isEmpty(ckpts)) {
            Files.delete(ckpts);
        }
        mark(out);
    }

    /** What {@code out} holds when this run may start there (null: the resumed run's own folder); else a refusal. */
    private static Found refuse(Path out, Path resumed, boolean overwrite) throws IOException {
        if (resumed != null && sameFolder(out, resumed)) {
            return null;
        }
        Found f = scan(out);
        if (!f.marked() && !f.foreign().isEmpty()) {
            throw new UserError(out + " holds files this trainer did not write (" + names(out, f.foreign())
                    + "): give an empty --output-dir");
        }
        if (!f.own().isEmpty() || !f.links().isEmpty()) {
            if (!overwrite) {
                // --overwrite is safe to offer here: what it removes is the run's alone
                String kept = f.foreign().isEmpty() ? ""
                        : " (keeping " + names(out, f.foreign()) + ", which this trainer did not write)";
                String what = describe(out);
                throw new UserError(resumed != null
                        ? out + " holds another run (" + what + ") than the one resumed from " + resumed
                                + ": give an empty output_dir, or --overwrite to replace it" + kept
                        : out + " holds a run (" + what + "): --resume " + out + " continues it, another --output-dir"
                                + " starts a new one, --overwrite replaces it" + kept);
            }
            if (!f.links().isEmpty()) { // checked before anything is removed
                Path l = f.links().get(0);
                throw new UserError(l + " is a symbolic link (to " + Files.readSymbolicLink(l) + "): --overwrite removes a run's"
                        + " files only inside " + out + ", never through a link; remove the link, or give another --output-dir");
            }
        }
        return f;
    }

    /**
     * What of a run's names {@code out} holds: the run's own files (only when run.json marks the folder),
     * the symbolic links among them in a marked folder (a run's, which --overwrite will not touch), and the
     * rest, which this trainer did not write and never removes.
     */
    private record Found(boolean marked, List<Path> own, List<Path> links, List<Path> foreign) {}

    private static Found scan(Path out) throws IOException {
        List<Path> own = new ArrayList<>(), links = new ArrayList<>(), foreign = new ArrayList<>();
        if (!Files.isDirectory(out)) {
            return new Found(false, own, links, foreign);
        }
        Path marker = out.resolve(MARKER);
        boolean marked = isMark(marker);
        List<Path> top = new ArrayList<>();
        for (String f : RUN_FILES) {
            top.add(out.resolve(f));
        }
        try (var s = Files.list(out)) {
            s.filter(p -> p.getFileName().toString().startsWith(TensorBoardLog.PREFIX)).sorted().forEach(top::add);
        }
        for (Path p : top) {
            String name = p.getFileName().toString();
            // another program's event files have TensorBoard's prefix too, but not this trainer's suffix
            boolean runs = marked && (!name.startsWith(TensorBoardLog.PREFIX) || name.endsWith(TensorBoardLog.SUFFIX));
            if (Files.exists(p, LinkOption.NOFOLLOW_LINKS)) {
                (!runs ? foreign : Files.isSymbolicLink(p) ? links : Files.isRegularFile(p, LinkOption.NOFOLLOW_LINKS) ? own
                        : foreign).add(p);
            }
        }
        Path ckpts = out.resolve(CHECKPOINTS);
        if (Files.isDirectory(ckpts)) {
            // an empty checkpoints/ is in no one's way (one linked elsewhere neither: the run writes through it)
            List<Path> written = new ArrayList<>();
            try (var s = Files.list(ckpts)) {
                for (Path p : s.sorted().toList()) {
                    (marked && Checkpoints.written(p.getFileName().toString()) ? written : foreign).add(p);
                }
            }
            if (Files.isSymbolicLink(ckpts) && !written.isEmpty()) {
                links.add(ckpts); // what lies behind it is not removed through it
            } else {
                for (Path p : written) {
                    (Files.isSymbolicLink(p) ? links : own).add(p);
                }
            }
        } else if (Files.exists(ckpts, LinkOption.NOFOLLOW_LINKS)) {
            foreign.add(ckpts);
        }
        if (!marked && Files.exists(marker, LinkOption.NOFOLLOW_LINKS)) {
            foreign.add(marker); // another program's run.json: this run's would replace it
        }
        return new Found(marked, own, links, foreign);
    }

    /** Whether {@code file} is a run.json this trainer wrote (another program may well use the name). */
    private static boolean isMark(Path file) {
        if (!Files.isRegularFile(file)) {
            return false;
        }
        try {
            JsonNode n = Json.MAPPER.readTree(file.toFile());
            return n != null && "klrl".equals(n.path("trainer").asText()) && n.hasNonNull("run_id");
        } catch (IOException e) {
            return false; // this trainer writes run.json whole (by rename), so one that does not parse is not its
        }
    }

    private static void mark(Path out) throws IOException {
        ObjectNode m = Json.MAPPER.createObjectNode();
        m.put("trainer", "klrl");
        m.put("run_id", UUID.randomUUID().toString());
        m.put("started", Instant.now().truncatedTo(ChronoUnit.SECONDS).toString());
        Json.writeAtomically(out.resolve(MARKER), Json.MAPPER.writerWithDefaultPrettyPrinter().writeValueAsString(m) + "\n");
    }

    /** "config.yaml, checkpoints/my-model", relative to {@code out}; past {@link #LISTED} names, "and N more". */
    private static String names(Path out, List<Path> files) {
        List<String> n = new ArrayList<>();
        for (Path p : files.subList(0, Math.min(LISTED, files.size()))) {
            n.add(out.relativize(p).toString());
        }
        return String.join(", ", n) + (files.size() > LISTED ? " and " + (files.size() - LISTED) + " more" : "");
    }

    private static boolean isEmpty(Path dir) throws IOException {
        try (var s = Files.list(dir)) {
            return s.findAny().isEmpty();
        }
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
