package klrl.model;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDList;
import ai.djl.pytorch.engine.PtNDManager;
import ai.djl.pytorch.engine.PtSymbolBlock;
import ai.djl.pytorch.jni.JniUtils;
import ai.djl.training.ParameterStore;
import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.zip.ZipEntry;
import java.util.zip.ZipOutputStream;

/**
 * Causal attention through libtorch's fused {@code scaled_dot_product_attention}, which DJL's API does
 * not expose: a one-op TorchScript module, written here as the archive torch.jit.save would write
 * (code, a pickled module object, constants, version), loaded by DJL and called with autograd when
 * grad mode is on. libtorch picks the kernel: flash attention on CPU (with a backward that keeps the
 * row log-sum-exp, not the [T,S] probabilities) and flash / memory-efficient attention on CUDA, so no
 * [B,H,T,S] tensor is kept for backward and memory grows linearly in the sequence.
 */
final class Sdpa implements AutoCloseable {
    private static final String CODE = """
            class Causal(Module):
              __parameters__ = []
              __buffers__ = []
              training : bool
              def forward(self: __torch__.Causal,
                q: Tensor,
                k: Tensor,
                v: Tensor) -> Tensor:
                return torch.scaled_dot_product_attention(q, k, v, None, 0., True)
            class Masked(Module):
              __parameters__ = []
              __buffers__ = []
              training : bool
              def forward(self: __torch__.Masked,
                q: Tensor,
                k: Tensor,
                v: Tensor,
                mask: Tensor) -> Tensor:
                return torch.scaled_dot_product_attention(q, k, v, mask, 0., False)
            """;

    /** Calls made, over every instance: lets a test see the fused path ran. */
    static final java.util.concurrent.atomic.AtomicLong CALLS = new java.util.concurrent.atomic.AtomicLong();

    private final PtNDManager manager;
    private final byte[] causalArchive, maskedArchive;
    private final ParameterStore store;
    /**
     * The two modules, one pair per calling thread: DJL switches a module between training and
     * inference mode on every call that differs from its last (a field and a native flag, not
     * synchronised), and pipeline stages call at once, some recording a graph and some not.
     */
    private final ThreadLocal<PtSymbolBlock[]> modules = ThreadLocal.withInitial(this::load);
    private final List<PtSymbolBlock> loaded = new ArrayList<>();

    Sdpa(PtNDManager manager) {
        this.manager = manager;
        try {
            this.causalArchive = archive("Causal");
            this.maskedArchive = archive("Masked");
        } catch (IOException e) {
            throw new java.io.UncheckedIOException(e);
        }
        this.store = new ParameterStore(manager, false);
        modules.get(); // a broken archive fails here, at start
    }

    private PtSymbolBlock[] load() {
        try {
            PtSymbolBlock[] m = {JniUtils.loadModule(manager, new ByteArrayInputStream(causalArchive), true, false),
                JniUtils.loadModule(manager, new ByteArrayInputStream(maskedArchive), true, false)};
            synchronized (loaded) {
                loaded.addAll(List.of(m));
            }
            return m;
        } catch (IOException e) {
            throw new java.io.UncheckedIOException(e);
        }
    }

    /** softmax(q·kᵀ/√D + causal mask)·v: q, k, v [B,H,T,D] (k and v with as many heads as q) → [B,H,T,D]. */
    NDArray causal(NDArray q, NDArray k, NDArray v) {
        CALLS.incrementAndGet();
        return modules.get()[0].forward(store, new NDList(q, k, v), JniUtils.isGradMode()).singletonOrThrow();
    }

    /** The same with an additive mask [B,1,T,S] instead of the causal one (a left-padded prefill). */
    NDArray masked(NDArray q, NDArray k, NDArray v, NDArray mask) {
        CALLS.incrementAndGet();
        return modules.get()[1].forward(store, new NDList(q, k, v, mask), JniUtils.isGradMode()).singletonOrThrow();
    }

    /** The TorchScript archive of module {@code cls}: a zip whose entries sit under one folder, as torch.jit.save lays them. */
    private static byte[] archive(String cls) throws IOException {
        // pickle protocol 2: the class __torch__.<cls>, instantiated without arguments, its state {training: True}
        ByteArrayOutputStream pk = new ByteArrayOutputStream();
        pk.write(new byte[] {(byte) 0x80, 2, 'c'});
        pk.write(("__torch__\n" + cls + "\n").getBytes(StandardCharsets.US_ASCII));
        pk.write(new byte[] {'q', 0, ')', (byte) 0x81, '}', 'q', 1, 'X', 8, 0, 0, 0, 't', 'r', 'a', 'i', 'n', 'i', 'n', 'g', 'q', 2,
                (byte) 0x88, 's', 'b', '.'});
        byte[] data = pk.toByteArray();
        byte[] constants = {(byte) 0x80, 2, ')', '.'}; // an empty tuple
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        try (ZipOutputStream z = new ZipOutputStream(out)) {
            put(z, "sdpa/data.pkl", data);
            put(z, "sdpa/code/__torch__.py", CODE.getBytes(StandardCharsets.UTF_8));
            put(z, "sdpa/constants.pkl", constants);
            put(z, "sdpa/version", "3\n".getBytes(StandardCharsets.UTF_8));
        }
        return out.toByteArray();
    }

    private static void put(ZipOutputStream z, String name, byte[] bytes) throws IOException {
        ZipEntry e = new ZipEntry(name);
        // stored, not deflated: torch's reader maps entries by offset
        e.setMethod(ZipEntry.STORED);
        e.setSize(bytes.length);
        java.util.zip.CRC32 crc = new java.util.zip.CRC32();
        crc.update(bytes);
        e.setCrc(crc.getValue());
        z.putNextEntry(e);
        z.write(bytes);
        z.closeEntry();
    }

    @Override
    public void close() {
        synchronized (loaded) {
            loaded.forEach(PtSymbolBlock::close);
            loaded.clear();
        }
    }
}
