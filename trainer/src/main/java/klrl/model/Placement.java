package klrl.model;

import ai.djl.Device;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import klrl.util.UserError;

/**
 * Where each part of the decoder lives when its layers are split over several devices (pipeline
 * placement on one node). Layers form contiguous groups, one per device, in device order; the final
 * norm and lm_head live on the last device, the embedding on the first (on the last when it is tied
 * to lm_head, so the one matrix stays one tensor). Callers keep their own tensors on
 * {@link #output()}: that is where hidden states, logits, losses and sampling end up.
 *
 * <p>Groups are balanced by parameter count: the embedding and lm_head weigh as much as a few
 * layers of a 7B model (152k × 3584 for Qwen2.5), so the first and last devices get fewer layers.
 */
public record Placement(List<Device> devices, int[] deviceOfLayer, int embedDevice) {

    public Placement {
        devices = List.copyOf(devices);
        if (devices.isEmpty()) {
            throw new IllegalArgumentException("placement needs at least one device");
        }
        for (int l = 1; l < deviceOfLayer.length; l++) {
            if (deviceOfLayer[l] < deviceOfLayer[l - 1]) {
                throw new IllegalArgumentException("layer groups must be contiguous and in device order");
            }
        }
    }

    /** Everything on one device. */
    public static Placement single(Device d, int layers) {
        return new Placement(List.of(d), new int[layers], 0);
    }

    /**
     * Contiguous layer groups over {@code devices} minimising the largest per-device parameter count
     * (the embedding counted on its device, the final norm and lm_head on the last).
     */
    public static Placement balanced(List<Device> devices, ModelConfig c) {
        int n = devices.size(), layers = c.numLayers();
        if (n > layers) {
            throw new UserError("model.device lists " + n + " devices for a model with " + layers + " layers (at least one layer per device)");
        }
        long[] fixed = new long[n];
        long vocab = (long) c.vocabSize() * c.hiddenSize();
        int embedOn = c.tieWordEmbeddings() ? n - 1 : 0;
        fixed[embedOn] += vocab;
        fixed[n - 1] += c.hiddenSize() + (c.tieWordEmbeddings() ? 0 : vocab);
        int[] counts = split(layers, c.layerParameterCount(), fixed);
        int[] of = new int[layers];
        int l = 0;
        for (int d = 0; d < n; d++) {
            for (int i = 0; i < counts[d]; i++) {
                of[l++] = d;
            }
        }
        return new Placement(devices, of, embedOn);
    }

    /**
     * Layer counts per device (each ≥ 1) of the contiguous split with the smallest maximum load: the
     * candidate maxima are tried in increasing order, each checked by filling devices greedily
     * (≤ 8 devices × ≤ 128 layers candidates: cheap).
     */
    static int[] split(int layers, long perLayer, long[] fixed) {
        int n = fixed.length;
        long[] candidates = new long[n * layers];
        for (int d = 0; d < n; d++) {
            for (int k = 1; k <= layers; k++) {
                candidates[d * layers + k - 1] = fixed[d] + k * perLayer;
            }
        }
        Arrays.sort(candidates);
        for (long cap : candidates) {
            int[] counts = new int[n];
            int left = layers;
            boolean ok = true;
            for (int d = 0; d < n && ok; d++) {
                int mustLeave = n - 1 - d; // one layer for each later device
                int take = d == n - 1 ? left : (int) Math.min(left - mustLeave, Math.max(0, (cap - fixed[d]) / perLayer));
                ok = take >= 1 && fixed[d] + take * perLayer <= cap;
                counts[d] = take;
                left -= take;
            }
            if (ok && left == 0) {
                return counts;
            }
        }
        throw new IllegalStateException("no split of " + layers + " layers over " + n + " devices");
    }

    /** Parses "cpu", "cuda:0,cuda:1" or bare indices "0,1,2" (CUDA ordinals), checking each device. */
    public static List<Device> parseDevices(String spec, java.util.function.Function<String, Device> one) {
        List<Device> out = new ArrayList<>();
        for (String s : spec.split(",")) {
            String t = s.strip();
            if (t.isEmpty()) {
                throw new UserError("model.device '" + spec + "' has an empty entry; expected e.g. 0,1 or cuda:0,cuda:1");
            }
            out.add(one.apply(t.chars().allMatch(Character::isDigit) ? "cuda:" + t : t));
        }
        return out;
    }

    public int stages() {
        return devices.size();
    }

    public Device layer(int l) {
        return devices.get(deviceOfLayer[l]);
    }

    public Device embedding() {
        return devices.get(embedDevice);
    }

    /** The last device: final norm, lm_head, and every tensor a caller makes. */
    public Device output() {
        return devices.get(devices.size() - 1);
    }

    /** True when layer l starts a new device group (the tensor flowing in must move). */
    public boolean startsGroup(int l) {
        return l > 0 && deviceOfLayer[l] != deviceOfLayer[l - 1];
    }

    /** Layers per device, in device order. */
    public int[] layerCounts() {
        int[] c = new int[devices.size()];
        for (int d : deviceOfLayer) {
            c[d]++;
        }
        return c;
    }
}
