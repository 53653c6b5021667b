package klrl.train;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import java.io.IOException;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;
import klrl.checkpoint.Checkpoints;
import klrl.config.TrainConfig;
import klrl.model.Decoder;
import klrl.model.Lora;
import klrl.model.Placement;
import klrl.model.SafeTensors;

/**
 * The networks of a run and what the optimizer updates.
 *
 * <ul>
 *   <li>{@code policy}: the model being trained (its LoRA adapters, or all its weights);
 *   <li>{@code reference}: π_ref. Under LoRA it is the policy itself, read inside
 *       {@link Decoder#adaptersOff()}; with full fine-tuning a frozen second copy;
 *   <li>{@code critic}, {@code valueHead} (PPO): the value head sits on the policy's trunk, or on a
 *       separate copy of the model when model.critic is "separate".
 * </ul>
 */
public final class Policies {
    public final Decoder policy, reference, critic;
    final ValueHead valueHead;
    final Map<String, Lora> adapters;
    /** Trainable tensors by checkpoint name, in the order the optimizer and checkpoints see them. */
    public final Map<String, NDArray> trainable = new LinkedHashMap<>();
    /** Learning-rate multipliers of the critic's tensors (algorithm.value_lr / optim.lr). */
    final Map<String, Double> lrScale = new LinkedHashMap<>();
    private double criticScale = 1;

    private Policies(Decoder policy, Decoder reference, Decoder critic, ValueHead valueHead, Map<String, Lora> adapters) {
        this.policy = policy;
        this.reference = reference;
        this.critic = critic;
        this.valueHead = valueHead;
        this.adapters = adapters;
    }

    public static Policies load(TrainConfig cfg, Path modelDir, NDManager root, DataType dtype, Placement placement) throws IOException {
        String attention = cfg.model().attention();
        Decoder policy = Decoder.load(modelDir, root, dtype, placement).attention(attention).headChunk(cfg.model().headChunkTokens());
        var l = cfg.model().lora();
        boolean lora = l.rank() > 0;
        Map<String, Lora> adapters = lora
                ? policy.addAdapters(l.targetModules(), l.rank(), l.alpha(), l.dropout(), cfg.train().seed()) : Map.of();
        Decoder reference = lora ? policy : Decoder.load(modelDir, root, dtype, placement).attention(attention).headChunk(cfg.model().headChunkTokens());
        boolean ppo = cfg.algorithm().name().equals("ppo");
        ValueHead head = ppo ? new ValueHead(root, policy.config.hiddenSize(), cfg.train().seed()) : null;
        Decoder critic = ppo && cfg.model().critic().equals("separate")
                ? Decoder.load(modelDir, root, dtype, placement).attention(attention).headChunk(cfg.model().headChunkTokens()) : policy;
        return new Policies(policy, reference, critic, head, adapters).withTrainable(cfg.algorithm().valueLr() / cfg.optim().lr());
    }

    /**
     * A data-parallel replica in {@code m}, on its device: every trainable tensor copied from these;
     * frozen weights shared where they already live on that device, else copied. The trainable map
     * has the same names in the same order, each tensor recording gradients.
     */
    public Policies replica(NDManager m) {
        Decoder pol = policy.replica(m, !lora()); // full fine-tuning trains the weights themselves
        Decoder ref = lora() ? pol : reference.replica(m, false);
        Decoder cri = critic == policy ? pol : critic.replica(m, true);
        Policies p = new Policies(pol, ref, cri, valueHead == null ? null : valueHead.replica(m), pol.adapters())
                .withTrainable(criticScale);
        p.trainable.values().forEach(t -> t.setRequiresGradient(true));
        return p;
    }

    /**
     * The policy alone, copied into {@code m} for generating on rollout.devices: what trains is copied
     * (and refreshed by {@link Replicas#copyFrom}), frozen weights shared where they already live on
     * that device. Its {@link #trainable} names the policy's tensors as the master's does; none records
     * gradients.
     */
    public Policies generator(NDManager m) {
        Decoder pol = policy.replica(m, !lora());
        return new Policies(pol, pol, pol, null, pol.adapters()).withTrainable(1);
    }

    /** Fills {@link #trainable} (policy first, then the critic's tensors at {@code criticScale} × lr). */
    private Policies withTrainable(double criticScale) {
        this.criticScale = criticScale;
        trainable.putAll(lora() ? Lora.peftTensors(adapters) : policy.parameters());
        Map<String, NDArray> criticParams = new LinkedHashMap<>();
        if (critic != policy) {
            critic.parameters().forEach((k, v) -> criticParams.put("critic." + k, v));
        }
        if (valueHead != null) {
            criticParams.putAll(valueHead.parameters());
        }
        criticParams.forEach((k, v) -> {
            trainable.put(k, v);
            lrScale.put(k, criticScale);
        });
        return this;
    }

    boolean lora() {
        return !adapters.isEmpty();
    }

    boolean ppo() {
        return valueHead != null;
    }

    /** What a checkpoint stores as the policy: the adapters under PEFT's names, or the full weights. */
    Map<String, NDArray> policyWeights() {
        return lora() ? Lora.peftTensors(adapters) : policy.parameters();
    }

    /** PPO's critic as a checkpoint stores it: the value head, and the separate critic model's weights. */
    Map<String, NDArray> criticState() {
        Map<String, NDArray> c = new LinkedHashMap<>(valueHead.parameters());
        if (critic != policy) {
            critic.parameters().forEach((k, v) -> c.put("critic." + k, v));
        }
        return c;
    }

    /** PEFT's adapter_config.json of this run's LoRA (empty with full fine-tuning), as checkpoints and rollout servers get it. */
    Map<String, Object> adapterConfig(TrainConfig cfg, Path modelDir) {
        var l = cfg.model().lora();
        return lora() ? Lora.adapterConfig(l.rank(), l.alpha(), l.dropout(), l.targetModules(), modelDir) : Map.of();
    }

    /** The trainable weights (adapters or the full policy, and PPO's critic) as checkpoint {@code ckpt} saved them. */
    void restore(Path ckpt, NDManager m) {
        if (lora()) {
            SafeTensors.copyInto(policyWeights(), Checkpoints.readAll(ckpt.resolve("adapter_model.safetensors"), m),
                    ckpt + "/adapter_model.safetensors");
        } else {
            Map<String, NDArray> saved = new LinkedHashMap<>();
            SafeTensors.index(ckpt).forEach((k, e) -> saved.put(k, SafeTensors.load(e, m, DataType.FLOAT32)));
            SafeTensors.copyInto(policyWeights(), saved, ckpt.toString());
        }
        if (ppo()) {
            SafeTensors.copyInto(criticState(), Checkpoints.readAll(ckpt.resolve("value_head.safetensors"), m),
                    ckpt + "/value_head.safetensors");
        }
    }
}
