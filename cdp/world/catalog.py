"""The simulated shop's catalog: durables, the consumables they lead to, and everyday items.

Each consumable has a base cycle: the days one unit lasts an average customer. A product
with ``pack_size`` 2 holds two units and lasts about twice as long. Customers scale the
base cycle by a personal factor (see :mod:`cdp.world.purchases`).
"""

from __future__ import annotations

import pandas as pd

# product_id, name, zh-TW, zh-CN, category, consumable, price, pack_size, related, base_cycle
# fmt: off
_ROWS = [
    ('P-PRINTER', 'Inkjet Printer', '噴墨印表機', '喷墨打印机', 'printing', False, 149.0, 1, None, 0),
    ('P-INK', 'Black Ink Cartridge', '黑色墨水匣', '黑色墨盒', 'printing', True, 25.0, 1, 'P-PRINTER', 45),
    ('P-INK-2', 'Black Ink Cartridge 2-Pack', '黑色墨水匣兩入組', '黑色墨盒两支装', 'printing', True, 45.0, 2, 'P-PRINTER', 45),
    ('P-ESPRESSO', 'Espresso Machine', '義式咖啡機', '意式咖啡机', 'coffee', False, 299.0, 1, None, 0),
    ('P-PODS', 'Espresso Pods (30)', '咖啡膠囊 30 顆', '咖啡胶囊 30 颗', 'coffee', True, 15.0, 1, 'P-ESPRESSO', 20),
    ('P-PODS-2', 'Espresso Pods (2 x 30)', '咖啡膠囊 60 顆', '咖啡胶囊 60 颗', 'coffee', True, 28.0, 2, 'P-ESPRESSO', 20),
    ('P-GRINDER', 'Burr Coffee Grinder', '錐刀磨豆機', '锥刀磨豆机', 'coffee', False, 89.0, 1, None, 0),
    ('P-BEANS', 'Coffee Beans 500 g', '咖啡豆 500 克', '咖啡豆 500 克', 'coffee', True, 14.0, 1, 'P-GRINDER', 21),
    ('P-BEANS-2', 'Coffee Beans 1 kg', '咖啡豆 1 公斤', '咖啡豆 1 公斤', 'coffee', True, 26.0, 2, 'P-GRINDER', 21),
    ('P-FEEDER', 'Automatic Pet Feeder', '自動寵物餵食器', '自动宠物喂食器', 'pets', False, 79.0, 1, None, 0),
    ('P-CATFOOD', 'Dry Cat Food 2 kg', '貓乾糧 2 公斤', '猫粮 2 公斤', 'pets', True, 22.0, 1, 'P-FEEDER', 30),
    ('P-CATFOOD-2', 'Dry Cat Food 2 x 2 kg', '貓乾糧 2 公斤兩入', '猫粮 2 公斤两袋装', 'pets', True, 40.0, 2, 'P-FEEDER', 30),
    ('P-PITCHER', 'Water Filter Pitcher', '濾水壺', '滤水壶', 'home', False, 35.0, 1, None, 0),
    ('P-FILTER', 'Water Filter Cartridge', '濾芯', '滤芯', 'home', True, 12.0, 1, 'P-PITCHER', 60),
    ('P-FILTER-3', 'Water Filter Cartridge 3-Pack', '濾芯三入組', '滤芯三支装', 'home', True, 32.0, 3, 'P-PITCHER', 60),
    ('P-TOOTHBRUSH', 'Electric Toothbrush', '電動牙刷', '电动牙刷', 'personal care', False, 69.0, 1, None, 0),
    ('P-HEADS', 'Toothbrush Heads', '電動牙刷刷頭', '电动牙刷刷头', 'personal care', True, 15.0, 1, 'P-TOOTHBRUSH', 75),
    ('P-RAZOR', 'Razor Handle', '刮鬍刀握把', '剃须刀刀架', 'personal care', False, 12.0, 1, None, 0),
    ('P-BLADES', 'Razor Blades (4)', '刮鬍刀片 4 入', '剃须刀片 4 片装', 'personal care', True, 16.0, 1, 'P-RAZOR', 28),
    ('P-BLADES-2', 'Razor Blades (8)', '刮鬍刀片 8 入', '剃须刀片 8 片装', 'personal care', True, 29.0, 2, 'P-RAZOR', 28),
    ('P-HEADPHONES', 'Bluetooth Headphones', '藍牙耳機', '蓝牙耳机', 'audio', False, 59.0, 1, None, 0),
    ('P-MUG', 'Ceramic Mug', '陶瓷馬克杯', '陶瓷马克杯', 'kitchen', False, 12.0, 1, None, 0),
    ('P-TRAVELMUG', 'Travel Mug', '隨行杯', '随行杯', 'kitchen', False, 22.0, 1, None, 0),
    ('P-NOTEBOOK', 'Dot-Grid Notebook', '方格筆記本', '点阵笔记本', 'stationery', False, 6.0, 1, None, 0),
    ('P-PHONECASE', 'Phone Case', '手機殼', '手机壳', 'accessories', False, 18.0, 1, None, 0),
    ('P-LAMP', 'LED Desk Lamp', 'LED 檯燈', 'LED 台灯', 'home', False, 39.0, 1, None, 0),
    ('P-BACKPACK', 'Everyday Backpack', '日常後背包', '日常双肩包', 'accessories', False, 49.0, 1, None, 0),
    ('P-COOKBOOK', 'Weeknight Cookbook', '平日料理食譜', '家常菜谱', 'books', False, 25.0, 1, None, 0),
    ('P-TSHIRT', 'Cotton T-Shirt', '純棉 T 恤', '纯棉 T 恤', 'apparel', False, 15.0, 1, None, 0),
    ('P-YOGAMAT', 'Yoga Mat', '瑜珈墊', '瑜伽垫', 'sports', False, 29.0, 1, None, 0),
]
# fmt: on

#: Needs that bring a customer to a durable and its consumables: (durable, consumables
#: with the share of customers preferring each, share of customers with the need, whether
#: the durable usually comes first, share who buy the durable here).
FAMILIES = (
    ("P-PRINTER", (("P-INK", 0.65), ("P-INK-2", 0.35)), 0.22, True, 0.7),
    ("P-ESPRESSO", (("P-PODS", 0.6), ("P-PODS-2", 0.4)), 0.12, True, 0.7),
    ("P-GRINDER", (("P-BEANS", 0.7), ("P-BEANS-2", 0.3)), 0.22, False, 0.35),
    ("P-FEEDER", (("P-CATFOOD", 0.6), ("P-CATFOOD-2", 0.4)), 0.16, False, 0.4),
    ("P-PITCHER", (("P-FILTER", 0.7), ("P-FILTER-3", 0.3)), 0.12, True, 0.7),
    ("P-TOOTHBRUSH", (("P-HEADS", 1.0),), 0.12, True, 0.6),
    ("P-RAZOR", (("P-BLADES", 0.6), ("P-BLADES-2", 0.4)), 0.16, True, 0.8),
)

#: Everyday, non-consumable items and how popular each is in ordinary orders.
EVERYDAY = {
    "P-HEADPHONES": 0.6,
    "P-MUG": 1.2,
    "P-TRAVELMUG": 0.9,
    "P-NOTEBOOK": 1.5,
    "P-PHONECASE": 1.0,
    "P-LAMP": 0.5,
    "P-BACKPACK": 0.5,
    "P-COOKBOOK": 0.8,
    "P-TSHIRT": 1.3,
    "P-YOGAMAT": 0.6,
}


def catalog() -> pd.DataFrame:
    """The catalog as a ``products`` table plus ``base_cycle_days`` (0 if not consumable)."""
    frame = pd.DataFrame(
        _ROWS,
        columns=[
            "product_id",
            "name",
            "name_zh_tw",
            "name_zh_cn",
            "category",
            "consumable",
            "price",
            "pack_size",
            "related_product_id",
            "base_cycle_days",
        ],
    )
    # the packs after a family's first consumable are variants of it (P-INK-2 of P-INK)
    variants = {c: options[0][0] for _, options, *_ in FAMILIES for c, _ in options[1:]}
    frame["variant_of"] = frame["product_id"].map(variants)
    return frame.astype(
        {
            "product_id": "str",
            "name": "str",
            "name_zh_tw": "str",
            "name_zh_cn": "str",
            "category": "str",
            "related_product_id": "str",
            "variant_of": "object",
            "consumable": "bool",
            "pack_size": "int64",
            "base_cycle_days": "float64",
        }
    )
