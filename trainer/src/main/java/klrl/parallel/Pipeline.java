package klrl.parallel;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Future;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.function.Supplier;
import klrl.model.Decoder;
import klrl.train.SequenceBatch;
import klrl.util.Grad;

/**
 * Layer placement's passes as a pipeline (train.pipeline): one thread per device group ("stage"),
 * micro-batches flowing through them, so that stage s computes micro-batch m while stage s+1
 * computes m−1. Forward-only passes (reference, recomputed log-probs, values) run as a plain
 * pipeline. The update runs one-forward-one-backward (1F1B, Megatron-LM's and DeepSpeed's schedule):
 * stage s runs S−1−s forwards ahead, then alternates one forward with one backward, so it keeps the
 * activations of at most S−s micro-batches.
 *
 * <p>Results do not depend on thread timing: every parameter belongs to one stage, and each stage runs
 * its backwards in micro-batch order, so each gradient accumulates in the order of the sequential
 * pass (bitwise, tested). The one exception is a tied embedding, whose lookup (first stage) and
 * lm_head (last stage) would add into one tensor from two threads: the lookup's gradients accumulate
 * in an alias of the matrix instead (one more embedding-sized gradient) and join the matrix's after
 * the last micro-batch: the same terms summed in another fixed order.
 *
 * <p>Hand-offs are FIFO queues: each stage runs its micro-batches' forwards, and its backwards, in
 * increasing order. A stage that fails stops the others at their next hand-off; every stage has ended
 * before the failure is rethrown and the micro-batches' managers are closed.
 */
public final class Pipeline {
    private final int stages;
    private final List<ExecutorService> threads = new ArrayList<>();
    /** Per metric name: Σ per-stage compute seconds, Σ pass wall seconds since the last {@link #takeBusy}. */
    private final Map<String, double[]> busy = new LinkedHashMap<>();

    /**
     * @param torchThreads libtorch intra-op threads per stage thread (0: libtorch's default)
     */
    public Pipeline(int stages, int torchThreads) {
        this.stages = stages;
        for (int s = 0; s < stages; s++) {
            threads.add(Replicas.worker("stage-" + s));
        }
        List<Future<Void>> set = new ArrayList<>();
        for (ExecutorService t : threads) {
            set.add(t.submit(() -> Replicas.threadSetUp(torchThreads)));
        }
        for (Future<Void> f : set) {
            try {
                f.get();
            } catch (ExecutionException e) {
                Replicas.rethrow(e.getCause());
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new IllegalStateException("interrupted while the pipeline's threads started", e);
            }
        }
    }

    /** A network of a forward-only pass and whether it runs without its LoRA adapters (the reference). */
    public record Net(Decoder model, boolean adaptersOff) {}

    /** What the last stage does with micro-batch k's final hidden states [B,T,E], one per network, in its manager. */
    public interface Sink {
        void accept(int k, List<NDArray> hidden, NDManager mm);
    }

    /**
     * Forward-only: each micro-batch through each of {@code nets} in order; the last stage hands their
     * final hidden states to {@code sink} (with a manager on the output device, closed after it), in
     * micro-batch order. Timed as {@code metric}.
     */
    public synchronized void forward(String metric, List<SequenceBatch> batches, List<Net> nets, NDManager root, Sink sink) {
        int m = batches.size();
        for (Net n : nets) {
            checkStages(n.model());
        }
        Run run = new Run(m, root, nets.get(0).model(), 2, false); // hand-offs at most 2 deep: stage 0 cannot run far ahead
        run.go(metric, s -> {
            for (int k = 0; k < m; k++) {
                List<NDArray> hidden = new ArrayList<>();
                for (Net n : nets) {
                    Decoder d = n.model();
                    Hop in = s == 0 ? null : run.take(run.fwd.get(s));
                    long t0 = System.nanoTime(); // compute from here: waiting for a hand-off is the bubble
                    in = s == 0 ? run.start(d, batches.get(k), k) : in;
                    NDArray x;
                    try (var off = n.adaptersOff() ? d.adaptersOff() : null) {
                        int[] r = layersOf(d, s);
                        x = d.layers(r[0], r[1], in.x(), in.pass());
                    }
                    if (s == stages - 1) {
                        hidden.add(d.finalNorm(d.toOutput(x), in.pass()));
                        settle(hidden.get(hidden.size() - 1));
                    } else {
                        settle(x);
                        run.put(run.fwd.get(s + 1), new Hop(k, x, in.pass(), in.tokens()));
                    }
                    run.busy[s] += System.nanoTime() - t0;
                }
                if (s == stages - 1) { // the micro-batch's last work: every stage is done with it
                    long t0 = System.nanoTime();
                    try (NDManager hm = root.newSubManager()) {
                        sink.accept(k, hidden, hm);
                    }
                    run.start[k].close();
                    run.busy[s] += System.nanoTime() - t0;
                }
            }
        });
    }

    /** The loss of one micro-batch, and what to read from it once its gradient has been taken (on the last stage). */
    public record Loss<T>(NDArray loss, Supplier<T> after) {}

    /** The head of the update: micro-batch k's final hidden states [B,T,E] → its loss, recorded, made in {@code mm}. */
    public interface Head<T> {
        Loss<T> apply(int k, NDArray hidden, NDManager mm);
    }

    /** One micro-batch's state on one stage between its forward and its backward. */
    private static final class InFlight {
        final List<NDArray> inputs = new ArrayList<>(), outputs = new ArrayList<>();
        Hop hop;
        NDArray grad; // the last stage's: handed back by the head
    }

    /** Per stage, the most micro-batches the last update held between forward and backward (1F1B: S − s). */
    int[] lastInFlight = new int[0];

    /**
     * The update's forward and backward over micro-batches, 1F1B: gradients accumulate into the model's
     * parameters as {@link StagedBackward#run} would leave them after the same micro-batches in order;
     * returns what each micro-batch's {@link Loss#after} read, in order.
     *
     * <p>Memory: each stage keeps a micro-batch's tensors in a manager of its own, closed when its
     * backward of that micro-batch is done; the head's (logits, log-softmax, their gradients) go as soon
     * as its gradient is taken. A stage's input is its own (a hand-off moves ownership, or the stage
     * makes its own leaf when the sender keeps the graph that produced it); a gradient handed back
     * belongs to the stage it is handed to.
     *
     * @param checkpointLayers recompute in stages of this many layers (0: each device's layers keep their graph)
     */
    public synchronized <T> List<T> update(Decoder model, List<SequenceBatch> batches, NDManager root, int checkpointLayers, Head<T> head) {
        checkStages(model);
        // tied embeddings: the lookup's gradients (first stage) go to an alias, lm_head's (last stage) to the matrix
        NDArray alias = model.embeddingTrains() && model.placement().embedDevice() == stages - 1 ? model.embeddingAlias() : null;
        try {
            Update<T> u = new Update<>(model, batches, root, checkpointLayers, head, alias);
            u.run.go("pipeline_busy", u::stage);
            lastInFlight = u.run.inFlight.clone();
            if (alias != null) {
                model.addEmbeddingGradient(alias);
            }
            return u.results;
        } finally {
            if (alias != null) {
                alias.close();
            }
        }
    }

    /** One update's 1F1B schedule: what each stage's thread runs, over what they share. */
    private final class Update<T> {
        final Decoder model;
        final List<SequenceBatch> batches;
        final NDManager root;
        final boolean recompute;
        final List<int[]> all;
        final Head<T> head;
        final NDArray alias;
        final Run run;
        final List<T> results;

        Update(Decoder model, List<SequenceBatch> batches, NDManager root, int checkpointLayers, Head<T> head, NDArray alias) {
            this.model = model;
            this.batches = batches;
            this.root = root;
            this.recompute = checkpointLayers > 0;
            this.all = StagedBackward.stages(model.placement(), model.numLayers(), checkpointLayers);
            this.head = head;
            this.alias = alias;
            this.run = new Run(batches.size(), root, model, Integer.MAX_VALUE, true); // 1F1B bounds what waits in a hand-off
            this.results = new ArrayList<>(java.util.Collections.nCopies(batches.size(), null));
        }

        /** Stage s: S − 1 − s forwards ahead, then one forward and one backward in turn until every micro-batch is back. */
        void stage(int s) throws InterruptedException {
            List<int[]> mine = all.stream().filter(st -> model.placement().deviceOfLayer()[st[0]] == s).toList();
            Map<Integer, InFlight> held = new java.util.HashMap<>();
            int m = batches.size(), warm = Math.min(stages - 1 - s, m), f = 0, b = 0;
            while (b < m) {
                if (f < m && (f < warm || f - b <= warm)) {
                    InFlight st = new InFlight();
                    st.hop = s == 0 ? null : run.take(run.fwd.get(s));
                    long t0 = System.nanoTime();
                    forward(s, f, mine, st);
                    held.put(f++, st);
                    run.inFlight[s] = Math.max(run.inFlight[s], held.size());
                    run.busy[s] += System.nanoTime() - t0;
                } else {
                    InFlight st = held.remove(b);
                    NDArray grad = s == stages - 1 ? st.grad : run.take(run.bwd.get(s)).x();
                    long t0 = System.nanoTime();
                    backward(s, b++, mine, st, grad);
                    run.busy[s] += System.nanoTime() - t0;
                }
            }
        }

        /** Micro-batch f through stage s's layers, then on to the next stage, or (last stage) through the head. */
        void forward(int s, int f, List<int[]> mine, InFlight st) throws InterruptedException {
            NDManager own = run.own[s][f];
            if (s == 0) {
                st.hop = run.start(model, batches.get(f), f);
                st.hop.x().attach(own); // the embedding: this stage's
            }
            NDArray x = st.hop.x();
            for (int[] r : mine) { // keep each stage's input (and, without recomputation, its graph)
                NDArray in = model.toLayer(r[0], x);
                boolean arriving = x == st.hop.x(); // the hand-off (on stage 0, the lookup: recomputed in backward)
                if (recompute) {
                    if (arriving && in != x) { // a device copy is this stage's input; nobody keeps the original
                        x.close();
                    }
                    if (arriving) {
                        in.attach(own);
                    }
                    st.inputs.add(in);
                    x = StagedBackward.stage(model, in, st.hop.pass(), r[0], r[1]);
                } else { // the sender keeps the graph ending in x: a leaf of this stage's own
                    NDArray leaf = StagedBackward.leaf(in);
                    leaf.attach(own);
                    if (in != x) { // a device copy: the leaf shares its storage
                        in.close();
                        if (s == 0) { // a tied embedding's lookup, on the last device
                            x.close();
                        }
                    }
                    st.inputs.add(leaf);
                    try (Grad gc = Grad.record()) {
                        x = StagedBackward.stage(model, leaf, st.hop.pass(), r[0], r[1]);
                    }
                    st.outputs.add(x);
                }
            }
            if (s == stages - 1) {
                head(f, x, st, own);
            } else {
                settle(x);
                run.put(run.fwd.get(s + 1), new Hop(f, x, st.hop.pass(), st.hop.tokens()));
            }
        }

        /** The head: the loss from the detached last hidden states, their gradient kept for the backward. */
        void head(int f, NDArray x, InFlight st, NDManager own) {
            try (NDManager hm = root.newSubManager()) {
                NDArray last = StagedBackward.leaf(model.toOutput(x));
                last.attach(hm);
                Loss<T> loss;
                try (Grad gc = Grad.record()) {
                    loss = head.apply(f, model.finalNorm(last, st.hop.pass()), hm);
                    gc.backward(loss.loss());
                }
                results.set(f, loss.after().get());
                st.grad = last.getGradient();
                st.grad.attach(own);
            }
        }

        /** Micro-batch b's gradient back through stage s's layers, then to the previous stage or into the embedding. */
        void backward(int s, int b, List<int[]> mine, InFlight st, NDArray gradIn) throws InterruptedException {
            NDArray grad = StagedBackward.backward(model, mine, st.inputs, st.outputs, st.hop.pass(), gradIn, recompute);
            if (s > 0) {
                settle(grad);
                grad.attach(run.own[s - 1][b]); // the receiver's from now on
                run.put(run.bwd.get(s - 1), new Hop(b, grad, null, null));
            } else {
                if (model.embeddingTrains()) { // the lookup's gradient, in micro-batch order (into the alias when tied)
                    NDArray e = StagedBackward.lookupBackward(model, st.hop.tokens(), alias, grad);
                    if (e.getDevice().equals(grad.getDevice())) { // (a tied lookup's runs on the last device)
                        settle(e);
                    }
                }
                settle(grad);
            }
            run.own[s][b].close();
            if (s == 0) {
                run.start[b].close(); // the micro-batch's last work: every stage is done with it
            }
        }
    }

    private void checkStages(Decoder model) {
        if (model.placement().stages() != stages) {
            throw new IllegalArgumentException("a pipeline of " + stages + " stages runs a model placed over as many devices, not "
                    + model.placement().stages());
        }
    }

    /**
     * On a GPU, waits for the work queued on {@code a}'s device: kernels run asynchronously, so without
     * it a stage's clock would read how long queueing took, not computing (pipeline_busy).
     */
    private static void settle(NDArray a) {
        if (a.getDevice().isGpu()) {
            try (ai.djl.ndarray.NDScope scope = new ai.djl.ndarray.NDScope()) {
                a.reshape(-1).get(0).toType(ai.djl.ndarray.types.DataType.FLOAT32, false).getFloat();
            }
        }
    }

    /** The layers of {@code d} on stage s, [from, to) (a placement's groups are contiguous). */
    private static int[] layersOf(Decoder d, int s) {
        int[] of = d.placement().deviceOfLayer();
        int from = 0;
        while (of[from] != s) {
            from++;
        }
        int to = from;
        while (to < of.length && of[to] == s) {
            to++;
        }
        return new int[] {from, to};
    }

    /** A hand-off between stages: micro-batch k's activation (or gradient), its pass and tokens. */
    private record Hop(int k, NDArray x, Decoder.Pass pass, NDArray tokens) {}

    /** A stage body: runs stage s's share of a pass. */
    private interface Body {
        void run(int s) throws InterruptedException;
    }

    /**
     * One pass: per micro-batch a manager on the first device for its tokens and pass (closed by the
     * stage that finishes the micro-batch) and, for the update, one per stage; the queues between
     * stages; per-stage compute time.
     */
    private final class Run {
        final NDManager[] start;
        final NDManager[][] own;
        final List<BlockingQueue<Hop>> fwd = new ArrayList<>(), bwd = new ArrayList<>();
        final long[] busy = new long[stages];
        final int[] inFlight = new int[stages];
        /** Set when a stage failed: the others stop at their next hand-off. */
        volatile boolean failed;

        /** @param perStage a manager per stage and micro-batch too (the update's) */
        Run(int m, NDManager root, Decoder model, int depth, boolean perStage) {
            start = new NDManager[m];
            own = new NDManager[perStage ? stages : 0][m];
            List<ai.djl.Device> devices = model.placement().devices();
            for (int k = 0; k < m; k++) {
                start[k] = root.newSubManager(devices.get(0));
                for (int s = 0; s < own.length; s++) {
                    own[s][k] = root.newSubManager(devices.get(s));
                }
            }
            for (int s = 0; s < stages; s++) {
                fwd.add(new LinkedBlockingQueue<>(depth));
                bwd.add(new LinkedBlockingQueue<>(depth));
            }
        }

        /** The first stage's input of micro-batch k through {@code d}: its tokens and pass on the first device, their embedding. */
        Hop start(Decoder d, SequenceBatch b, int k) {
            NDManager mm = start[k];
            NDArray tokens = b.tokens(mm);
            return new Hop(k, d.embed(tokens), b.pass(d, tokens, mm), tokens);
        }

        Hop take(BlockingQueue<Hop> q) throws InterruptedException {
            while (true) {
                if (failed) { // not even what is already queued: the pass is lost
                    throw new Aborted();
                }
                Hop h = q.poll(50, TimeUnit.MILLISECONDS);
                if (h != null) {
                    return h;
                }
            }
        }

        void put(BlockingQueue<Hop> q, Hop h) throws InterruptedException {
            while (!q.offer(h, 50, TimeUnit.MILLISECONDS)) {
                if (failed) {
                    throw new Aborted();
                }
            }
        }

        /** Runs every stage's body in its thread and waits for all of them; the first failure is rethrown. */
        void go(String metric, Body body) {
            long t0 = System.nanoTime();
            List<Future<?>> fs = new ArrayList<>();
            Throwable first = null;
            for (int s = 0; s < stages && first == null; s++) {
                int stage = s;
                try {
                    fs.add(threads.get(s).submit(() -> {
                        try {
                            klrl.util.CpuShare.follow(); // trainers started or ended on this machine: this stage's share of the cores
                            body.run(stage);
                        } catch (Throwable t) {
                            failed = true; // every stage stops at its next hand-off
                            throw t;
                        }
                        return null;
                    }));
                } catch (java.util.concurrent.RejectedExecutionException e) { // stopped meanwhile
                    failed = true;
                    first = e;
                }
            }
            boolean interrupted = false, aborted = false;
            for (Future<?> f : fs) { // every stage has ended before anything is closed or thrown
                while (true) {
                    try {
                        f.get();
                    } catch (InterruptedException e) {
                        interrupted = true; // a stage still runs on these managers: stop them, and wait regardless
                        failed = true;
                        continue;
                    } catch (ExecutionException e) {
                        Throwable c = e.getCause();
                        aborted |= c instanceof Aborted;
                        if (!(c instanceof Aborted)) {
                            first = first == null ? c : first;
                        }
                    }
                    break;
                }
            }
            if (interrupted) {
                Thread.currentThread().interrupt();
                if (aborted && first == null) { // stopped for the interrupt: the pass is incomplete
                    first = new IllegalStateException("interrupted while a pipelined pass ran");
                }
            }
            for (int k = 0; k < start.length; k++) {
                start[k].close();
                for (NDManager[] stage : own) {
                    stage[k].close();
                }
            }
            Replicas.rethrow(first);
            double wall = (System.nanoTime() - t0) / 1e9;
            double[] acc = busy(metric);
            for (long b : this.busy) {
                acc[0] += b / 1e9 / stages;
            }
            acc[1] += wall;
        }
    }

    private double[] busy(String metric) {
        synchronized (busy) {
            return busy.computeIfAbsent(metric, x -> new double[2]);
        }
    }

    /**
     * pipeline_busy (the update) and pipeline_busy_&lt;pass&gt; (forward-only passes) since the last call:
     * each stage's compute time over the passes' wall time, averaged over stages (1.0 = no bubble).
     */
    Map<String, Double> takeBusy() {
        synchronized (busy) {
            Map<String, Double> out = new LinkedHashMap<>();
            busy.forEach((k, v) -> out.put(k, v[1] > 0 ? v[0] / v[1] : Double.NaN));
            busy.clear();
            return out;
        }
    }

    /** A stage woken by another's failure. */
    private static final class Aborted extends RuntimeException {
        Aborted() {
            super("pipeline stage stopped after another stage failed", null, false, false);
        }
    }

    /** Stops the stage threads (a running pass is interrupted at its next hand-off); false if one still runs after the wait. */
    public boolean stop() {
        boolean stopped = true;
        for (ExecutorService t : threads) {
            stopped &= Replicas.stop(t);
        }
        return stopped;
    }
}
