package klrl.model;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.Device;
import java.util.ArrayList;
import java.util.List;
import klrl.TestPaths;
import klrl.util.UserError;
import org.junit.jupiter.api.Test;

/** Layer placement over devices: balanced against brute force, parameters mapped by name. */
class PlacementTest {
    static List<Device> gpus(int n) {
        List<Device> d = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            d.add(Device.gpu(i));
        }
        return d;
    }

    /** The largest per-device parameter count of a placement, counted from the tensor list. */
    static long maxLoad(Placement p, ModelConfig c) {
        long[] load = new long[p.stages()];
        for (var e : c.expectedTensors().entrySet()) {
            long n = 1;
            for (long d : e.getValue()) {
                n *= d;
            }
            load[p.devices().indexOf(Decoder.deviceOf(e.getKey(), p))] += n;
        }
        long m = 0;
        for (long l : load) {
            m = Math.max(m, l);
        }
        return m;
    }

    /**
     * Smallest maximum load over every contiguous split (each device ≥ 1 layer), by enumeration; the
     * per-layer and fixed loads are counted from the tensor list here, independently of Placement.
     */
    static long bruteForce(ModelConfig c, int devices) {
        long perLayer = 0, embed = 0, rest = 0;
        for (var e : c.expectedTensors().entrySet()) {
            long n = 1;
            for (long d : e.getValue()) {
                n *= d;
            }
            if (e.getKey().startsWith("model.layers.0.")) {
                perLayer += n;
            } else if (e.getKey().startsWith("model.embed_tokens.")) {
                embed = n;
            } else if (!e.getKey().startsWith("model.layers.")) {
                rest += n;
            }
        }
        long[] fixed = new long[devices];
        fixed[c.tieWordEmbeddings() ? devices - 1 : 0] += embed;
        fixed[devices - 1] += rest;
        return best(fixed, perLayer, 0, c.numLayers(), 0);
    }

    private static long best(long[] fixed, long perLayer, int d, int left, long maxSoFar) {
        int n = fixed.length;
        if (d == n - 1) {
            return Math.max(maxSoFar, fixed[d] + left * perLayer);
        }
        long b = Long.MAX_VALUE;
        for (int k = 1; k <= left - (n - 1 - d); k++) {
            b = Math.min(b, best(fixed, perLayer, d + 1, left - k, Math.max(maxSoFar, fixed[d] + k * perLayer)));
        }
        return b;
    }

    @Test
    void balancedSplitIsOptimalForThePaperModels() {
        for (String name : new String[] {"qwen2.5", "llama3.1"}) {
            ModelConfig c = ModelConfig.load(TestPaths.model(name));
            for (int n : new int[] {2, 3, 4, 8}) {
                Placement p = Placement.balanced(gpus(n), c);
                int[] counts = p.layerCounts();
                assertEquals(c.numLayers(), java.util.Arrays.stream(counts).sum());
                assertEquals(bruteForce(c, n), maxLoad(p, c), name + " on " + n + " GPUs: " + java.util.Arrays.toString(counts));
                // the embedding and lm_head weigh several layers: the end devices hold fewer layers
                if (n > 2) {
                    assertTrue(counts[0] < counts[n / 2] && counts[n - 1] < counts[n / 2], java.util.Arrays.toString(counts));
                }
            }
        }
    }

    @Test
    void parametersGoWhereThePlacementSays() {
        ModelConfig c = ModelConfig.load(TestPaths.model("qwen2.5"));
        Placement p = Placement.balanced(gpus(4), c);
        assertEquals(Device.gpu(0), Decoder.deviceOf("model.embed_tokens.weight", p));
        assertEquals(Device.gpu(3), Decoder.deviceOf("lm_head.weight", p));
        assertEquals(Device.gpu(3), Decoder.deviceOf("model.norm.weight", p));
        int[] counts = p.layerCounts();
        assertEquals(Device.gpu(0), Decoder.deviceOf("model.layers." + (counts[0] - 1) + ".mlp.up_proj.weight", p));
        assertEquals(Device.gpu(1), Decoder.deviceOf("model.layers." + counts[0] + ".self_attn.q_proj.bias", p));
        assertTrue(p.startsGroup(counts[0]) && !p.startsGroup(counts[0] - 1));
    }

    @Test
    void tiedEmbeddingsLiveWithTheHead() {
        ModelConfig c = ModelConfig.load(TestPaths.fixture("qwen2-f16-tied"));
        Placement p = Placement.balanced(gpus(2), c);
        assertEquals(Device.gpu(1), p.embedding());
        assertEquals(Device.gpu(1), p.output());
    }

    static Device device(String s) {
        return s.startsWith("cuda:") ? Device.gpu(Integer.parseInt(s.substring(5))) : Device.fromName(s);
    }

    @Test
    void deviceListsParseOrNameTheBadEntry() {
        assertEquals(List.of(Device.gpu(0), Device.gpu(1)), Placement.parseDevices("0,1", PlacementTest::device));
        assertEquals(List.of(Device.cpu(), Device.cpu()), Placement.parseDevices("cpu, cpu", PlacementTest::device));
        UserError e = assertThrows(UserError.class, () -> Placement.parseDevices("0,,1", PlacementTest::device));
        assertTrue(e.getMessage().contains("model.device"), e.getMessage());
        ModelConfig c = ModelConfig.load(TestPaths.fixture("qwen2-f16-tied"));
        assertThrows(UserError.class, () -> Placement.balanced(gpus(c.numLayers() + 1), c));
    }
}
