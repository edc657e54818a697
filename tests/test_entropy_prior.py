"""ESH-Vision's entropy prior: in [0, 1], 0 for a constant image, equal to its reference, and
computed from un-normalised pixels whatever the model's mean/std."""
import torch
from hypothesis import given, settings, strategies as st

import zoo
from zoo.ops.entropy import patch_entropy, patch_entropy_reference, pool_entropy, unnormalize


def pixels_u8(b, c, h, w, seed):
    """uint8-like pixel values k/255: never within float error of a bin edge (k*32/255 is not an integer)."""
    return torch.randint(0, 256, (b, c, h, w), generator=torch.Generator().manual_seed(seed)).float() / 255


@given(st.integers(1, 3), st.sampled_from([1, 3]), st.sampled_from([2, 4, 8]), st.integers(1, 3),
       st.integers(1, 3), st.integers(0, 2**16))
def test_patch_entropy_matches_reference_and_lies_in_unit_interval(b, c, p, gh, gw, seed):
    x = pixels_u8(b, c, gh * p, gw * p, seed)
    ent = patch_entropy(x, p)
    assert ent.shape == (b, gh, gw)
    assert torch.allclose(ent, patch_entropy_reference(x, p), atol=1e-6)
    assert ent.min() >= 0 and ent.max() <= 1


@given(st.floats(0.0, 1.0), st.sampled_from([2, 4, 16]))
def test_constant_image_has_zero_entropy(value, p):
    assert torch.equal(patch_entropy(torch.full((2, 3, 2 * p, p), value), p), torch.zeros(2, 2, 1))


def test_entropy_is_one_for_a_patch_spread_over_all_bins():
    levels = (torch.arange(32).float() + 0.5) / 32      # bin centres
    x = levels.view(1, 1, 8, 4).repeat(1, 1, 1, 2)       # an 8x8 patch: every bin twice
    assert torch.allclose(patch_entropy(x, 8), torch.ones(1, 1, 1), atol=1e-6)


@given(st.integers(0, 2**16), st.sampled_from([1, 3]))
@settings(max_examples=8)
def test_model_prior_from_normalised_images_equals_entropy_of_raw_pixels(seed, chans):
    g = torch.Generator().manual_seed(seed)
    mean = tuple((torch.rand(chans, generator=g) * 0.6 + 0.2).tolist())
    std = tuple((torch.rand(chans, generator=g) * 0.3 + 0.1).tolist())
    model = zoo.create_model("eshvision_xs", embed_dim=16, depths=(1, 2), num_heads=(2, 2), img_size=16,
                             in_chans=chans, mean=mean, std=std)
    raw = pixels_u8(2, chans, 16, 16, seed)
    normalised = (raw - torch.tensor(mean).view(1, -1, 1, 1)) / torch.tensor(std).view(1, -1, 1, 1)
    assert torch.equal(model.entropy_prior(normalised), patch_entropy(raw, 4))
    assert torch.allclose(unnormalize(normalised, mean, std), raw, atol=1e-6)
    # the seed's bug: quantising the normalised values gives a different prior
    assert not torch.equal(patch_entropy(normalised.clamp(0, 1), 4), patch_entropy(raw, 4))


def test_pool_entropy_averages_real_patches_of_odd_grids():
    ent = torch.arange(15.0).view(1, 3, 5) / 15
    pooled = pool_entropy(ent)
    assert pooled.shape == (1, 2, 3)
    assert torch.isclose(pooled[0, 0, 0], ent[0, :2, :2].mean())
    assert torch.isclose(pooled[0, 1, 2], ent[0, 2, 4])          # a corner cell alone
    assert torch.isclose(pooled[0, 1, 0], ent[0, 2, :2].mean())  # padding does not count
