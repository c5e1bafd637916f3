"""Every configuration key of vireid, with its default and a one-line comment.

This is the one defaults file (OmegaConf structured config: the dataclasses below give each key its
type, so an unknown key or a value of the wrong type is an error). Experiment YAML files in
``configs/`` inherit from a base (``_base_: ../base.yaml``) and override a few keys; the command line
overrides any key with ``key=value``. The fully resolved config is saved as ``config.yaml`` in the
run folder.

Stable keys users touch most: ``data.name``, ``data.root``, ``train.epochs``, ``train.seed``,
``model.pretrained``, ``output_dir``.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class DataConfig:
    name: str = "sysu"  # dataset reader: sysu | regdb | llcm | manifest (or a registered plug-in)
    root: str = "data/SYSU-MM01"  # dataset folder in its official layout
    trial: int = 1  # RegDB: which idx trial (1..10) to train on; ignored by other datasets
    height: int = 288  # input height in pixels
    width: int = 144  # input width in pixels
    pad: int = 10  # zero padding before the random crop
    flip: bool = True  # random horizontal flip
    cache: bool = True  # decode and resize each training image once into a memory-mapped cache ($VIREID_CACHE/decoded, default ~/.cache/vireid); same tensors, less work per step
    resize: str = "lanczos"  # resize filter of train and test images: lanczos (the reference code's pre-resizing, PIL ANTIALIAS) | bilinear
    random_erasing: float = 0.5  # probability of the reference's channel random erasing on the visible and infrared views (0 disables; AGW: 0)
    erasing_fill: list[float] = field(default_factory=lambda: [0.4914, 0.4822, 0.4465])  # erasing fill per channel in NORMALISED units (reference); [0, 0, 0] = ImageNet mean
    channel_exchange: bool = False  # CAJ: add a channel-exchanged visible view (modality code 2) to each step
    channel_erasing: float = 0.5  # CAJ: probability of channel random erasing on the exchanged view
    channel_exchange_gray: bool = False  # CAJ: grayscale as a 4th channel-exchange choice (reference script: R, G, B only)
    infrared_channel_gray: float = 0.5  # CAJ ChannelAdapGray on infrared: R, G, B copied 1/4 each; 4th case: grayscale with this probability, else unchanged
    grayscale_view: bool = False  # FAFE: add a grayscale-of-visible view (modality code 2) to each step
    trivial_augment: bool = False  # FAFE: torchvision TrivialAugmentWide on training images
    augment_on: str = "auto"  # where the augmentations run: workers (each image in a loader worker) | device (workers decode and draw the parameters; the batch is augmented as tensors where it trains: the same tensors) | auto (device on CUDA)
    workers: int = -1  # data-loader worker processes, persistent across epochs; -1 = the CPU count minus one (at most 16)
    ids_per_batch: int = 8  # P: identities per batch
    images_per_id: int = 4  # K: visible (and as many infrared) images per identity in a batch


@dataclass
class ModelConfig:
    name: str = "agw"  # registered model: agw | caj | dam (| fafe)
    arch: str = "resnet50"  # backbone: resnet50 | resnet18 (tiny CPU runs) | crossvit_* (FAFE: timm CrossViT or crossvit_micro)
    pretrained: str = "imagenet"  # imagenet (torchvision weights, local cache or download) | path/to/weights.pth | none
    specific_stages: int = 0  # modality-specific ResNet stages after the stem: 0 = stem only (AGW, CAJ), 1 = stem + layer1 (DAM)
    last_stride: int = 1  # stride of layer4
    non_local: bool = False  # AGW non-local blocks (2 in layer2, 3 in layer3)
    non_local_inter_channels_one: bool = False  # reproduce the AGW reference code's inter_channels = 1 mistake
    pool: str = "gem"  # global pooling: gem | avg | max
    gem_p: float = 3.0  # GeM exponent p
    mca_after: list[int] = field(default_factory=list)  # DAM: insert MCA (eqs 1-4) after these ResNet stages (1..4)
    mca_reduction: int = 8  # DAM MCA: C' = C / mca_reduction channels for Q and K
    mca_pool_sizes: list[int] = field(default_factory=lambda: [3, 5, 7])  # DAM MCA: multi-scale max-pool kernels (stride 1)
    mca_dilations: list[int] = field(default_factory=lambda: [1, 2, 3])  # DAM MCA: dilation rates of the value branch
    pca_after: list[int] = field(default_factory=list)  # DAM: insert PCA (eqs 5-8) after these ResNet stages (1..4)
    pca_parts: int = 3  # DAM PCA: horizontal parts p
    local_parts: int = 0  # DAM PCB local branch stripes (1, 2, 3, 6); 0 disables the local branch
    local_dim: int = 256  # DAM local branch: reduced dimension of each stripe
    neck_feat: str = "after"  # test feature taken after (post-BN, as papers report) | before the BNNeck
    test_feature: str = "global"  # DAM Table 4: global | local | both
    crossvit_patch_size: list[int] = field(default_factory=list)  # FAFE CrossViT: [fine, coarse] patch sizes; [] = the variant's
    crossvit_coarse_scale: float = 224 / 240  # FAFE CrossViT: coarse-branch input = this x image size, floored to its patch multiple
    multiscale_residual: bool = True  # FAFE CrossViT: residual from each multi-scale encoder's input to its output, per branch
    drop_path_rate: float = 0.0  # FAFE CrossViT: stochastic depth rate of the transformer blocks
    csa: bool = True  # FAFE: channel (eq 10) then spatial (eq 12) attention on the backbone feature map
    csa_branch: str = "coarse"  # FAFE CrossViT: whose patch tokens form the CSA feature map: coarse | fine
    csa_reduction: int = 16  # FAFE CSA eq 10: C1 maps C -> C / csa_reduction channels
    csa_kernel: int = 7  # FAFE CSA eq 12: spatial-attention conv kernel size
    csa_combine: str = "concat"  # FAFE CSA eq 12: channel-avg and channel-max maps concatenated (CBAM) | sum (paper's "+")


@dataclass
class LossConfig:
    id_smoothing: float = 0.0  # label smoothing xi of the ID loss (FAFE eq 13 uses 0.1)
    metric: str = "wrt"  # global metric loss: wrt (AGW) | batch_hard (DAM eq 10) | adaptive (FAFE eq 15) | esd (CAJ) | center (FAFE) | none
    wrt_variant: str = "reference"  # weights of loss.metric=wrt and esd: reference (AGW code's weights: +1e-6 normalisers, anchor as own positive; published AGW numbers) | softmax (exact softmax weights)
    margin: float = 0.3  # triplet margin rho (batch_hard, hetero-center)
    cross_modality: bool = True  # batch_hard: positives/negatives from the other modality only
    mse_weight: float = 1.0  # DAM eq 13 (in eq 14): weight of the visible/infrared feature MSE (0 disables)
    alpha: float = 1.0  # DAM eq 16: weight of L_local
    lambda1: float = 0.5  # DAM eq 15: local ID loss weight
    lambda2: float = 0.1  # DAM eq 15: three-modality hetero-center triplet weight (eq 11)
    lambda3: float = 2.0  # DAM eq 15: hetero-center loss weight (eq 12)
    center_normalize: bool = True  # DAM eqs 11-12 on the L2-normalised local feature (false: raw stripe features)
    adaptive_mode: str = "hinge"  # loss.metric=adaptive (FAFE eq 15): hinge, margin alpha = loss.margin | softplus (WRT form)
    center_weight: float = 0.0005  # loss.metric=center (FAFE Table 4): weight of the Wen et al. centre loss


@dataclass
class OptimConfig:
    name: str = "sgd"  # sgd (momentum, Nesterov) | adam
    lr: float = 0.1  # learning rate of the new layers (heads, attention modules)
    backbone_lr: float = 0.01  # learning rate of the pretrained backbone
    momentum: float = 0.9  # SGD momentum / Adam beta1
    nesterov: bool = True  # SGD Nesterov momentum
    weight_decay: float = 5e-4  # L2 weight decay
    warmup_epochs: int = 10  # linear warm-up length
    milestones: list[int] = field(default_factory=lambda: [20, 50])  # epochs at which the LR is multiplied by gamma
    gamma: float = 0.1  # step-schedule factor
    clip_grad_norm: float = 0.0  # gradient clipping max-norm (0 disables)
    fused: str = "auto"  # fused SGD/Adam kernels (one kernel per step; under float16 AMP the scaler skips on the device): auto (CUDA only) | true | false


@dataclass
class TrainConfig:
    epochs: int = 100  # training epochs
    iters_per_epoch: int = 0  # steps per epoch; 0 = the reference code's floor(max(#visible, #infrared) / (P*K)) + 1 (SYSU-MM01: 696 for 8x4, 1,392 for 4x4)
    init_checkpoint: str = ""  # fine-tune from these weights: a vireid checkpoint or an AGW/CAJ reference-code .t/.pth (classifiers skipped when the class count differs)
    seed: int = 0  # seed of Python, NumPy and torch RNGs
    deterministic: bool = False  # deterministic algorithms (bit-reproducible on CPU)
    amp: bool = True  # mixed precision on CUDA (ignored on CPU)
    amp_dtype: str = "auto"  # auto (bfloat16 where the GPU supports it, no loss scaling; else float16 + GradScaler) | bfloat16 | float16
    channels_last: str = "auto"  # channels-last memory format: auto (CUDA only: slower for the tiny CNNs on CPU, measured) | true | false
    compile: bool = False  # torch.compile the model for training (module.compile(): checkpoints keep their keys); first steps slower while it compiles
    compile_mode: str = "default"  # torch.compile mode with train.compile: default | reduce-overhead (CUDA graphs: the step replayed with one launch) | max-autotune
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    eval_every: int = 10  # evaluate trial 0 every N epochs (0 disables); the reference code: every 2
    best_metric: str = "mAP"  # mAP | rank1 (the reference code's): the metric that picks checkpoints/best.pt on test trial 0 (model selection on the test set; the final test uses the last weights)
    checkpoint_every: int = 1  # write checkpoints/last.pt every N epochs
    log_every: int = 20  # log training losses every N steps
    find_unused_parameters: bool = False  # DDP (torchrun): set when some parameters get no gradient in a step


@dataclass
class TestConfig:
    mode: str = "all"  # SYSU-MM01 search mode: all | indoor
    shots: int = 1  # SYSU-MM01 gallery shots: 1 | 10
    sampler: str = "community"  # SYSU-MM01 gallery sampler: community (random.seed(trial)) | official (rand_perm_cam.mat)
    direction: str = "visible_to_infrared"  # RegDB / LLCM: visible_to_infrared | infrared_to_visible
    trials: int = 10  # trials averaged in the final test
    batch_size: int = 64  # feature-extraction batch size
    flip: bool = False  # add the features of the horizontally flipped image


@dataclass
class VireidConfig:
    output_dir: str = "runs/default"  # run folder: config.yaml, checkpoints/, metrics.jsonl, TensorBoard events, log
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    test: TestConfig = field(default_factory=TestConfig)
