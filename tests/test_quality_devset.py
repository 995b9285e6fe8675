"""The dev set's labelling rules (benchmarks/devset.py) on made-up names: no Debian package needed."""
from benchmarks.devset import Item, is_positive, label_emoji, label_item, split_of


def test_emoji_names_map_to_labels_and_implied_parents():
    assert label_emoji("gun", "pistol")[0] == {"handgun", "gun", "weapon"}
    assert label_emoji("WATER PISTOL")[0] == {"handgun", "gun", "weapon"}
    assert label_emoji("hocho", "knife")[0] == {"knife", "weapon"}
    assert label_emoji("dagger knife")[0] == {"knife", "weapon"}
    assert label_emoji("bomb")[0] == {"weapon"}
    for drink in ("beer mug", "beers", "wine_glass", "cocktail glass", "sake bottle and cup", "champagne",
                  "tumbler glass", "bottle with popping cork"):
        assert label_emoji(drink)[0] == {"alcohol"}, drink
    assert label_emoji("smoking symbol")[0] == {"tobacco"}
    assert label_emoji("syringe")[0] == {"syringe", "drugs"}
    assert label_emoji("pill")[0] == {"pills", "drugs"}
    assert label_emoji("slot machine")[0] == {"gambling"}


def test_emoji_words_match_whole_words_only():
    # "gun" inside another word, "bra" inside "zebra", "pill" inside "caterpillar": not positives.
    for name in ("burgundy", "zebra face", "caterpillar", "winery sign", "drumstick"):
        pos, amb = label_emoji(name)
        assert pos == set() and amb == set(), name
    assert label_emoji("cat face")[0] == set()


def test_ambiguous_names_are_excluded_not_positive():
    pos, amb = label_emoji("no smoking symbol", "no_smoking")
    assert "tobacco" not in pos and "tobacco" in amb
    pos, amb = label_emoji("fork and knife", "fork_and_knife")
    assert "knife" not in pos and {"knife", "weapon"} <= amb
    pos, amb = label_emoji("baby bottle")
    assert pos == set() and amb == {"alcohol"}


def test_cataclysm_items_from_type_skill_and_file():
    assert label_item("glock_19", "GUN", "pistol", "items/gun/9mm.json")[0] == {"handgun", "gun", "weapon"}
    assert label_item("remington_870", "GUN", "shotgun", "items/gun/shot.json")[0] == {"rifle", "gun", "weapon"}
    assert label_item("mp5", "GUN", "smg", "items/gun/9mm.json")[0] == {"gun", "weapon"}
    pos, amb = label_item("compbow", "GUN", "archery", "items/ranged/bows.json")
    assert pos == {"weapon"} and "gun" in amb
    assert label_item("knife_chef", "TOOL", None, "items/melee/knives_kitchen.json")[0] == {"knife", "weapon"}
    assert label_item("sword_cane", "TOOL", None, "items/melee/swords_and_blades.json")[0] == set()
    assert label_item("grenade", "TOOL", None, "items/tool/explosives.json")[0] == {"weapon"}
    assert label_item("firecracker", "TOOL", None, "items/tool/explosives.json") == (set(), {"weapon"})
    assert label_item("beer", "COMESTIBLE", None, "items/comestibles/alcohol.json")[0] == {"alcohol"}
    assert label_item("cig", "COMESTIBLE", None, "items/comestibles/med.json")[0] == {"tobacco"}
    assert label_item("aspirin", "COMESTIBLE", None, "items/comestibles/med.json")[0] == {"pills", "drugs"}
    assert label_item("syringe", "TOOL", None, "items/tool/med.json")[0] == {"syringe", "drugs"}
    assert label_item("bra", "ARMOR", None, "items/armor/undergarment.json")[0] == {"underwear", "swim_or_underwear"}
    assert label_item("magazine_9mm", "MAGAZINE", None, "items/magazine/9mm.json") == (set(), {"weapon"})
    assert label_item("apple", "COMESTIBLE", None, "items/comestibles/raw_fruit.json") == (set(), set())


def test_split_is_by_group_and_is_positive_is_three_valued():
    assert split_of("u:1f52b") == split_of("u:1f52b")
    splits = {split_of(f"dda:item{i}") for i in range(50)}
    assert splits == {"train", "test"}
    it = Item("images/x.png", "noto", "u:1f52b", "pistol", ["gun", "weapon"], ["knife"])
    assert is_positive(it, "gun") is True
    assert is_positive(it, "knife") is None
    assert is_positive(it, "alcohol") is False
